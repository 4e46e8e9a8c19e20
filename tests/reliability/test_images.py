"""Decompression bombs: refused from the header, before anything is decoded, on every path."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hostile import bomb_png
from PIL import Image, ImageFile

from conftest import ASTRONAUT, make_checkpoint, write_class_folders
from ferkit.cli import main
from ferkit.data import load_dataset
from ferkit.errors import FerkitError
from ferkit.serve import create_app


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    path.write_bytes(bomb_png(29_000, 29_000))  # 3.3 MB that decodes to 3.4 GB
    return path


def test_pillow_guard_stays_on():
    import ferkit.imaging  # noqa: F401 - importing ferkit must not raise Pillow's limit

    assert Image.MAX_IMAGE_PIXELS == 89_478_485


def test_predict_refuses_bomb_fast_and_small(bomb, tmp_path):
    """`ferkit predict bomb.png`: exit 2 in < 1 s with < 300 MB more memory, size and limit named.

    In a child process, so its peak memory (ru_maxrss) is its own; a first call on a real
    photo loads everything, so what the bomb adds is measured alone.
    """
    ckpt = make_checkpoint(tmp_path / "m.pt")
    script = textwrap.dedent(f"""
        import json, resource, sys, time
        from ferkit.cli import main
        assert main(["-q", "predict", {str(ASTRONAUT)!r}, "--model", {str(ckpt)!r}]) == 0
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        rc = main(["predict", {str(bomb)!r}, "--model", {str(ckpt)!r}])
        seconds = time.perf_counter() - t0
        extra_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        print(json.dumps({{"rc": rc, "seconds": seconds, "extra_mb": extra_mb}}))
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["rc"] == 2
    assert str(bomb) in done.stderr and "841 MP" in done.stderr and "89.5 MP" in done.stderr
    assert result["seconds"] < 1.0, result
    assert result["extra_mb"] < 300, result


def test_server_refuses_bomb_with_413(bomb, tmp_path):
    client = TestClient(create_app(make_checkpoint(tmp_path / "m.pt")))
    t0 = time.perf_counter()
    r = client.post("/v1/predict", files={"file": ("b.png", bomb.read_bytes(), "image/png")})
    assert time.perf_counter() - t0 < 1.0
    assert r.status_code == 413
    body = r.json()
    assert body["error"] == "too_many_pixels"
    assert "841 MP" in body["detail"] and "50.0 MP" in body["detail"]


def test_server_refuses_big_png_before_decoding_exif(tmp_path, monkeypatch):
    """60 MP PNG (under Pillow's guard, over the server's 50 MP): refused from the header; a
    PNG's EXIF may follow its pixels, so reading it first decoded the whole image."""
    client = TestClient(create_app(make_checkpoint(tmp_path / "m.pt")))
    decoded = []
    original = ImageFile.ImageFile.load
    monkeypatch.setattr(
        ImageFile.ImageFile, "load", lambda im: decoded.append(im.size) or original(im)
    )
    r = client.post("/v1/predict", files={"file": ("b.png", bomb_png(10_000, 6_000), "image/png")})
    assert r.status_code == 413
    assert decoded == []
    assert "10000x6000 (60 MP)" in r.json()["detail"] and "50.0 MP" in r.json()["detail"]


def test_data_loading_names_the_bomb(bomb, tmp_path):
    root = tmp_path / "faces"
    write_class_folders(root, {"happy": 2, "sad": 2})
    (root / "happy" / "bomb.png").write_bytes(bomb.read_bytes())
    with pytest.raises(FerkitError, match=r"bomb\.png.*841 MP.*89\.5 MP"):
        load_dataset(root, use_cache=False)
    rc = main(["data", "info", str(root), "--no-cache"])
    assert rc == 2
