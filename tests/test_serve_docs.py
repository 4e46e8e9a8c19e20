"""`/docs` works offline: its page names only files the server itself answers."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from conftest import make_checkpoint
from ferkit.inference import EmotionRecognizer
from ferkit.serve import create_app


def test_docs_page_loads_only_local_files(tmp_path):
    rec = EmotionRecognizer(make_checkpoint(tmp_path / "m.pt"))
    with TestClient(create_app(rec)) as client:
        page = client.get("/docs")
        assert page.status_code == 200
        urls = re.findall(r"""(?:src|href)=["']([^"']+)""", page.text)
        urls += re.findall(r"""url: ?["']([^"']+)""", page.text)  # the OpenAPI schema
        assert len(urls) >= 4, urls  # script, stylesheet, icon, schema
        for url in urls:
            assert url.startswith("/") and not url.startswith("//"), f"{url} is not local"
            got = client.get(url)
            assert got.status_code == 200 and len(got.content) > 100, url
        assert client.get("/redoc").status_code == 404  # FastAPI's ReDoc page uses a CDN
