"""The REST API (`ferkit.serve.create_app`) through FastAPI's TestClient, and `ferkit serve`.

Random-weight model (fixed seed): tests check boxes, shapes, limits and error bodies, never
which emotion wins.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from conftest import ASTRONAUT, make_checkpoint
from ferkit.cli import main
from ferkit.inference import EmotionRecognizer
from ferkit.labels import EMOTIONS
from ferkit.serve import create_app

ASTRONAUT_FACE = (178, 63, 90, 113)  # the recognizer's (YuNet's) box for her face (x, y, w, h)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("serve") / "simple.pt", metrics={"val_acc": 0.5})


@pytest.fixture(scope="module")
def rec(checkpoint) -> EmotionRecognizer:
    return EmotionRecognizer(checkpoint)


@pytest.fixture(scope="module")
def client(rec):
    with TestClient(create_app(rec, max_upload_mb=1, timeout_s=20, workers=2)) as c:
        yield c


def png_bytes(image: Image.Image | np.ndarray, fmt: str = "PNG", **kw) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def upload(client, data: bytes, name="photo.png", ctype="image/png"):
    return client.post("/v1/predict", files={"file": (name, data, ctype)})


def assert_error(r, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "detail"} and body["detail"], body
    assert "Traceback" not in r.text and 'File "' not in r.text
    if code:
        assert body["error"] == code, body
    return body


def near(box, ref, tol=4) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(box, ref, strict=True))


# -- the happy path -------------------------------------------------------------------------


def test_predict_multipart_matches_the_recognizer(client, rec):
    r = upload(client, ASTRONAUT.read_bytes())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["image"] == {"width": 512, "height": 512}
    assert body["labels"] == list(EMOTIONS)
    (face,) = body["faces"]
    assert near(face["box"], ASTRONAUT_FACE)
    assert face["label"] in EMOTIONS and abs(sum(face["emotions"].values()) - 1) < 1e-3
    direct = rec.predict(str(ASTRONAUT))[0]
    assert face["label"] == direct.label and list(face["box"]) == list(direct.box)
    assert set(body["timing_ms"]) == {"queue", "decode", "detect", "classify", "total"}
    assert body["timing_ms"]["total"] >= body["timing_ms"]["classify"] > 0
    # the same facts in the same words as `ferkit predict --json` (one Result.to_dict)
    same = rec.predict(str(ASTRONAUT)).to_dict()
    assert body["faces"] == same["faces"] and body["image"] == same["image"]


def test_predict_json_base64_data_url_and_raw_body(client):
    data = ASTRONAUT.read_bytes()
    b64 = base64.b64encode(data).decode()
    boxes = []
    for r in (
        client.post("/v1/predict", json={"image": b64}),
        client.post("/v1/predict", json={"image": f"data:image/png;base64,{b64}"}),
        client.post("/v1/predict", content=data, headers={"content-type": "image/png"}),
    ):
        assert r.status_code == 200, r.text
        boxes.append(r.json()["faces"][0]["box"])
    assert boxes[0] == boxes[1] == boxes[2]


def test_no_face_is_an_empty_list(client):
    r = upload(client, png_bytes(np.full((240, 320, 3), 128, np.uint8)))
    assert r.status_code == 200 and r.json()["faces"] == []


def test_exif_orientation_is_applied(client):
    """A phone photo stored sideways: boxes come back in the upright image, as browsers show it."""
    upright = Image.open(ASTRONAUT).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    r = upload(
        client,
        png_bytes(upright.rotate(90, expand=True), "JPEG", quality=95, exif=exif),
        "phone.jpg",
        "image/jpeg",
    )
    assert r.status_code == 200, r.text
    assert r.json()["image"] == {"width": 512, "height": 512}
    assert near(r.json()["faces"][0]["box"], ASTRONAUT_FACE, tol=8)


def test_health_model_page_and_docs(client):
    health = client.get("/v1/health").json()
    assert health["status"] == "ok" and health["arch"] == "simple_cnn"
    meta = client.get("/v1/model").json()
    assert "state_dict" not in meta and meta["labels"] == list(EMOTIONS)
    assert meta["metrics"] == {"val_acc": 0.5} and meta["source"] == "simple.pt"
    assert meta["input_size"] == [48, 48] and json.loads(json.dumps(meta)) == meta
    page = client.get("/")
    assert page.status_code == 200 and "<title>ferkit" in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/docs").status_code == 200
    body = client.get("/openapi.json").json()["paths"]["/v1/predict"]["post"]["requestBody"]
    assert {"multipart/form-data", "application/json"} <= set(body["content"])


# -- limits and errors ----------------------------------------------------------------------


def test_upload_over_the_limit_is_413(client):
    big = b"\x89PNG" + bytes(2 * 1024 * 1024)  # over 1 MiB, by Content-Length
    assert_error(upload(client, big), 413, "too_large")
    # a chunked body (no Content-Length) is cut off while it is read
    chunks = (bytes(256 * 1024) for _ in range(12))
    r = client.post("/v1/predict", content=chunks, headers={"content-type": "image/png"})
    assert_error(r, 413, "too_large")
    # base64 under the body cap whose image is over the limit
    b64 = base64.b64encode(bytes(1024 * 1024 + 10)).decode()
    assert_error(client.post("/v1/predict", json={"image": b64}), 413, "too_large")


def test_not_an_image_is_415(client):
    assert_error(upload(client, b"hello", "notes.txt", "text/plain"), 415, "not_an_image")
    assert_error(upload(client, b"hello" * 100, "x.bin", "application/octet-stream"), 415)
    r = client.post("/v1/predict", content=b"hi", headers={"content-type": "text/plain"})
    assert_error(r, 415, "unsupported_media_type")


def test_bad_requests_are_422(client):
    truncated = ASTRONAUT.read_bytes()[:5000]
    assert_error(upload(client, truncated), 422, "corrupt_image")
    assert_error(upload(client, b""), 422, "empty")
    assert_error(client.post("/v1/predict", json={"picture": "x"}), 422, "bad_json")
    assert_error(client.post("/v1/predict", json={"image": "not base64!"}), 422, "bad_json")
    r = client.post("/v1/predict", data={"name": "x"}, files={"other": ("a", b"", "text/x")})
    assert r.status_code in (415, 422)
    assert_error(client.get("/v1/nope"), 404, "not_found")
    assert_error(client.get("/v1/predict"), 405)


def huge_png(width: int, height: int) -> bytes:
    """A valid all-black gray PNG of any size, built row by row (tiny once compressed)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    comp, row = zlib.compressobj(9), bytes(width + 1)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def test_huge_dimensions_downscaled_or_refused(client):
    # a 4096x4096 JPEG: decoded at reduced scale, boxes still in the upload's pixels
    big = Image.open(ASTRONAUT).convert("RGB").resize((4096, 4096), Image.BILINEAR)
    r = upload(client, png_bytes(big, "JPEG", quality=70), "big.jpg", "image/jpeg")
    assert r.status_code == 200, r.text
    assert r.json()["image"] == {"width": 4096, "height": 4096}
    (face,) = r.json()["faces"]
    assert near(face["box"], [8 * v for v in ASTRONAUT_FACE], tol=48)
    # a 12000x10000 PNG (120 MP, 60 kB compressed) is refused before it is decoded
    assert_error(upload(client, huge_png(12000, 10000)), 413, "too_many_pixels")


class Slow(EmotionRecognizer):
    """The recognizer, with each predict taking `delay` seconds more; counts overlaps."""

    delay = 0.0
    fail = False

    def predict(self, images, **kw):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(self.delay)
            if self.fail:
                raise RuntimeError("secret internal detail")
            return super().predict(images, **kw)
        finally:
            with self.lock:
                self.running -= 1


@pytest.fixture
def slow(checkpoint) -> Slow:
    s = Slow(checkpoint)
    s.lock, s.running, s.most = threading.Lock(), 0, 0
    return s


def test_timeout_is_504(slow):
    slow.delay = 1.0
    with TestClient(create_app(slow, timeout_s=0.2)) as c:
        assert_error(upload(c, ASTRONAUT.read_bytes()), 504, "timeout")


def test_internal_error_leaks_nothing(slow):
    slow.fail = True
    with TestClient(create_app(slow), raise_server_exceptions=False) as c:
        body = assert_error(upload(c, ASTRONAUT.read_bytes()), 500, "internal_error")
    assert "secret" not in json.dumps(body)


def test_concurrent_requests_share_one_model_within_the_worker_limit(slow):
    slow.delay = 0.05
    data = ASTRONAUT.read_bytes()
    with TestClient(create_app(slow, workers=2)) as c, ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: upload(c, data), range(16)))
    assert [r.status_code for r in results] == [200] * 16
    assert len({json.dumps(r.json()["faces"]) for r in results}) == 1  # same answer each time
    assert slow.most == 2  # ran in parallel, never beyond the pool's two workers


# -- the command ----------------------------------------------------------------------------


def test_serve_without_a_model_is_one_line(capsys, monkeypatch):
    from ferkit.inference import model_io

    monkeypatch.setattr(model_io, "DEFAULT_WEIGHTS", "absent.pt")  # an install without weights
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "--model" in err and len(err.strip().splitlines()) == 1


def test_serve_starts_uvicorn_on_localhost(checkpoint, monkeypatch):
    import uvicorn

    seen = {}

    def run(self, sockets):
        seen.update(config=self.config, bound=[s.getsockname() for s in sockets])
        for s in sockets:
            s.close()

    monkeypatch.setattr(uvicorn.Server, "run", run)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: seen.update(threads=n))
    assert main(["serve", "--model", str(checkpoint), "--port", "8123"]) == 0
    config = seen["config"]
    assert config.host == "127.0.0.1" and config.port == 8123 and seen["threads"] == 1
    assert seen["bound"] == [("127.0.0.1", 8123)]  # bound before the model loaded
    assert config.timeout_keep_alive == 5 and config.limit_concurrency == 256
    seen["app"] = config.app
    with TestClient(seen["app"]) as c:
        assert c.get("/v1/health").json()["status"] == "ok"


def test_taken_port_or_foreign_host_is_one_line_before_the_model_loads(capsys, monkeypatch):
    import socket

    import ferkit.cli.recognizer_options as options

    def no_model(args):
        raise AssertionError("the model was loaded before the address was checked")

    monkeypatch.setattr(options, "make_recognizer", no_model)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"127.0.0.1:{port} is in use" in err and "--port 0" in err
    assert len(err.splitlines()) == 1
    # 203.0.113.0/24 is reserved for documentation: never an address of this machine
    assert main(["serve", "--host", "203.0.113.7", "--port", "0"]) == 2
    assert "--host 203.0.113.7: not an address of this machine" in capsys.readouterr().err


def test_ctrl_c_twice_stops_without_a_traceback(checkpoint):
    """uvicorn's forced exit (a second Ctrl-C) left the app's lifespan pending, and the
    cancelled task was logged as an error with a traceback."""
    import signal

    command = [sys.executable, "-m", "ferkit", "serve", "--model", str(checkpoint), "--port", "0"]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(120, proc.kill)  # never hang the suite on a silent server
    watchdog.start()
    lines = []
    for line in proc.stderr:  # logging goes to stderr; this line says it listens
        lines.append(line)
        if " on http://" in line:
            break
    proc.send_signal(signal.SIGINT)
    time.sleep(0.03)  # two signals sent at once arrive as one; shutdown takes 0.1 s
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=60)
    watchdog.cancel()
    err = "".join(lines) + rest
    # 130, or death by the SIGINT uvicorn raises again on the way out: a shell says 130 too
    assert proc.returncode in (130, -signal.SIGINT), err
    assert "Traceback" not in err and err.rstrip().endswith("ferkit: interrupted")


def test_ctrl_c_is_130_even_when_the_reraised_signal_is_lost(checkpoint, monkeypatch, capsys):
    """A serve that uvicorn shut down for a Ctrl-C exits 130 with one line, even where the
    signal uvicorn raises again on its way out never reaches the CLI."""
    import signal

    import uvicorn

    def run(self, sockets):  # as uvicorn does on a Ctrl-C, its re-raise lost
        for s in sockets:
            s.close()
        self.handle_exit(signal.SIGINT, None)

    monkeypatch.setattr(uvicorn.Server, "run", run)
    assert main(["serve", "--model", str(checkpoint), "--port", "0"]) == 130
    assert capsys.readouterr().err.rstrip().endswith("ferkit: interrupted")


def test_help_does_not_import_the_web_stack():
    code = "import sys; from ferkit.cli import build_parser; build_parser(); print(sorted(m for m in ('fastapi', 'uvicorn') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_overload_is_503_at_once_and_the_queue_drains(slow):
    slow.delay = 1.0
    data = ASTRONAUT.read_bytes()

    def timed(_):
        t = time.perf_counter()
        return upload(c, data), time.perf_counter() - t

    with TestClient(create_app(slow, workers=1, max_queue=2)) as c, ThreadPoolExecutor(4) as pool:
        results = list(pool.map(timed, range(4)))
        assert sorted(r.status_code for r, _ in results) == [200, 200, 503, 503]
        busy = [(r, s) for r, s in results if r.status_code == 503]
        assert all(r.headers["retry-after"] == "1" for r, _ in busy)
        assert busy[0][0].json()["error"] == "busy"
        assert max(s for _, s in busy) < 0.8  # refused at once, not after waiting their turn
        assert c.get("/v1/health").json()["pending"] == 0
        assert upload(c, data).status_code == 200  # the queue has drained


def test_timed_out_work_counts_until_it_ends(slow):
    slow.delay = 0.8
    data = ASTRONAUT.read_bytes()
    with TestClient(create_app(slow, workers=1, max_queue=1, timeout_s=0.2)) as c:
        assert_error(upload(c, data), 504, "timeout")
        assert_error(upload(c, data), 503, "busy")  # the first inference is still running
        time.sleep(1.0)
        assert c.get("/v1/health").json()["pending"] == 0
