"""The server: garbage gets a 4xx, never a 500; no server path reaches a client."""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time

import pytest
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
        extra={
            "recipe": {
                "data": f"{secret}/fer2013",
                "config": {"data": "../shared/fer2013", "teacher": [f"{secret}/t.pt"]},
                "parent": {"checkpoint": f"{secret}/parent.pt"},
            }
        },
    )
    text = TestClient(create_app(ckpt)).get("/v1/model").text
    assert str(secret) not in text and str(tmp_path) not in text and "../" not in text
    assert '"parent.pt"' in text and '"fer2013"' in text  # the names stay
    assert torch.load(ckpt, weights_only=True)["extra"]["recipe"]["parent"]  # file untouched


@pytest.fixture
def served(tmp_path):
    """The app under uvicorn with ferkit's limits (headers due in 0.5 s), on a free port."""
    import uvicorn

    from ferkit.serve.server import server_config

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(make_checkpoint(tmp_path / "m.pt"))
    server = uvicorn.Server(
        server_config(app, host="127.0.0.1", port=port, log_level="warning", header_timeout_s=0.5)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(10)


def _closed_after(sock: socket.socket, trickle: bytes = b"") -> float:
    """Seconds until the server closes `sock`, sending `trickle` a byte every 0.1 s."""
    t0 = time.perf_counter()
    sock.settimeout(0.1)
    for i in range(100):
        try:
            if sock.recv(1024) == b"":
                return time.perf_counter() - t0
        except TimeoutError:
            pass
        except ConnectionError:  # closed with bytes of ours unread: a reset, not an EOF
            return time.perf_counter() - t0
        with contextlib.suppress(OSError):
            if trickle:
                sock.send(trickle[i % len(trickle) : i % len(trickle) + 1])
    return float("inf")


def test_slow_clients_are_cut_off(served):
    with socket.create_connection(("127.0.0.1", served)) as silent:
        assert _closed_after(silent) < 2.0
    with socket.create_connection(("127.0.0.1", served)) as slow:
        slow.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")
        assert _closed_after(slow, trickle=b"X-Slow: yes\r\n") < 2.0
    # a client that sends its headers in time is served, on a kept-alive connection too
    conn = http.client.HTTPConnection("127.0.0.1", served, timeout=5)
    for _ in range(2):
        conn.request("GET", "/v1/health")
        response = conn.getresponse()
        assert response.status == 200 and response.read()
        time.sleep(0.3)
    conn.close()
