"""The server: garbage gets a 4xx, never a 500; no server path reaches a client."""

from __future__ import annotations

import torch
from fastapi.testclient import TestClient

from conftest import make_checkpoint
from ferkit.serve import create_app


def test_deeply_nested_json_is_422_not_500(tmp_path):
    client = TestClient(create_app(make_checkpoint(tmp_path / "m.pt")))
    body = "[" * 100_000 + "]" * 100_000
    r = client.post("/v1/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["error"] == "bad_json"


def test_model_route_sends_no_paths(tmp_path):
    secret = tmp_path / "secret-home"
    ckpt = make_checkpoint(
        tmp_path / "m.pt",
        extra={"recipe": {"data": f"{secret}/fer2013", "config": {"data": "../shared/fer2013",
                          "teacher": [f"{secret}/t.pt"]},
                          "parent": {"checkpoint": f"{secret}/parent.pt"}}},
    )  # fmt: skip
    text = TestClient(create_app(ckpt)).get("/v1/model").text
    assert str(secret) not in text and str(tmp_path) not in text and "../" not in text
    assert '"parent.pt"' in text and '"fer2013"' in text  # the names stay
    assert torch.load(ckpt, weights_only=True)["extra"]["recipe"]["parent"]  # file untouched
