"""The HTTP API and web page: `create_app(model)` builds a FastAPI app around one recognizer.

    from ferkit.serve import create_app
    app = create_app("runs/exp1", max_upload_mb=10, timeout_s=30)   # or an EmotionRecognizer
    # uvicorn.run(app, host="127.0.0.1", port=8000)  -- what `ferkit serve` does

Routes: `POST /v1/predict` (multipart upload, JSON with base64, or a raw image body; query
options `min_face_score`, `min_face_size`, `max_faces` as in `EmotionRecognizer`),
`GET /v1/health`, `GET /v1/model`, the page at `/` (files in `static/`), OpenAPI at `/docs`.

Concurrency: the model is loaded once. Decoding and inference run in a thread pool of
`workers` threads (default: one more than the cores), never on the event loop; the pool's
size is the limit on concurrent inferences, so a burst of requests queues instead of
oversubscribing the cores. Eval-mode forward passes and the Haar detector (one cascade per
thread) are safe to run from several threads at once. Every error is a JSON body
`{"error": CODE, "detail": MSG}`; tracebacks go to the server's log only.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from ferkit import __version__
from ferkit.detection.boxes import FaceFilter
from ferkit.inference.recognizer import EmotionRecognizer
from ferkit.serve.docs import add_docs
from ferkit.serve.errors import MB, ApiError, BodyLimit, add_error_handlers
from ferkit.serve.uploads import (
    PREDICT_BODY,
    decode_image,
    query_face_filter,
    read_image_bytes,
)

STATIC = Path(__file__).parent / "static"
# Decoded pixels allowed per image. A 50 MP PNG already takes 150 MB as RGB; JPEGs larger
# than this are decoded at reduced scale (draft mode) instead of refused.
DEFAULT_MAX_PIXELS = 50_000_000


def create_app(
    model: EmotionRecognizer | str | Path | None = None,
    *,
    max_upload_mb: float = 10.0,
    timeout_s: float = 30.0,
    workers: int | None = None,
    max_queue: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> FastAPI:
    """The ferkit API and page around one model.

    Args:
        model: an EmotionRecognizer, a checkpoint / run folder / .onnx path, or None for the
            shipped model (CheckpointError while none is shipped).
        max_upload_mb: largest image accepted, in MiB (larger: 413).
        timeout_s: longest a prediction may take, upload and queueing included (then 504).
        workers: inferences run at once (default: `default_workers()`, one more than the
            cores); more requests wait.
        max_queue: inferences waiting or running at most (default: 16 per worker); beyond
            that a request gets 503 with Retry-After at once, rather than a 504 after
            `timeout_s`. An inference that outlives its request's timeout still counts until
            it ends: a thread cannot be stopped midway, so this is what keeps an overloaded
            server from piling up work nobody waits for.
        max_pixels: largest decoded image; bigger JPEGs are decoded at reduced scale, other
            formats refused with 413. Every image is then shrunk to the recognizer's
            `max_side` (1280) before detection.
    """
    rec = model if isinstance(model, EmotionRecognizer) else EmotionRecognizer(model)
    limit = int(max_upload_mb * MB)
    workers = max(1, workers or default_workers())
    max_queue = max(1, max_queue or 16 * workers)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="ferkit-serve")
    pending = 0  # inferences submitted and not yet finished (or cancelled while queued)

    def busy() -> ApiError:
        return ApiError(
            503,
            "busy",
            f"{pending} images are already being analysed; retry shortly",
            headers={"Retry-After": "1"},
        )

    def submit(data: bytes, face_filter: FaceFilter | None) -> asyncio.Future:
        nonlocal pending
        if pending >= max_queue:
            raise busy()
        pending += 1
        job = pool.submit(_infer, rec, data, max_pixels, time.perf_counter(), face_filter)
        loop = asyncio.get_running_loop()

        def done(_job) -> None:  # in the worker thread, or the loop's where cancelled
            with contextlib.suppress(RuntimeError):  # the loop closed: the server is gone
                loop.call_soon_threadsafe(finished)

        job.add_done_callback(done)
        return asyncio.wrap_future(job)

    def finished() -> None:
        nonlocal pending
        pending -= 1

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="ferkit",
        version=__version__,
        description="Facial expression recognition: faces in a photo -> emotion probabilities.",
        lifespan=lifespan,
        docs_url=None,  # served from packaged files by add_docs: FastAPI's loads from a CDN
        redoc_url=None,
    )
    add_docs(app)
    app.state.recognizer, app.state.pool = rec, pool
    # Multipart framing and base64 (4/3) make the body larger than the image it carries.
    app.add_middleware(BodyLimit, max_bytes=limit * 4 // 3 + 64 * 1024, limit_mb=max_upload_mb)
    add_error_handlers(app)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/v1/health", summary="Liveness: the model is loaded")
    async def health() -> dict:
        return {
            "status": "ok",
            "version": __version__,
            "arch": rec.meta.get("arch"),
            "backend": rec.backend,
            "workers": workers,
            "pending": pending,
            "max_queue": max_queue,
        }

    @app.get("/v1/model", summary="The model's metadata and metrics (no weights)")
    async def model_info() -> dict:
        return model_meta(rec)

    @app.post(
        "/v1/predict",
        summary="Faces and their emotions in one image",
        openapi_extra={"requestBody": PREDICT_BODY},
    )
    async def predict(request: Request) -> dict:
        start = time.perf_counter()
        try:
            async with asyncio.timeout(timeout_s):
                if pending >= max_queue:  # busy: the upload is read but not parsed
                    async for _chunk in request.stream():
                        pass  # a client still sending would not see the 503
                    raise busy()
                face_filter = query_face_filter(rec, request)
                data = await read_image_bytes(request)
                if len(data) > limit:
                    raise ApiError(
                        413,
                        "too_large",
                        f"the image is {len(data) / MB:.1f} MiB; "
                        f"the limit is {max_upload_mb:g} MiB",
                    )
                result = await submit(data, face_filter)
        except TimeoutError:
            raise ApiError(
                504, "timeout", f"the request took longer than {timeout_s:g} s"
            ) from None
        result["timing_ms"]["total"] = round((time.perf_counter() - start) * 1000, 2)
        return result

    return app


def default_workers() -> int:
    """Inference threads by default: one more than the cores. Each inference holds Python's
    lock for part of its time (between the native calls that release it), and the event loop
    needs a core for uploads, so one thread per core leaves cores idle: photo uploads at
    concurrency 8 on a 2-core VM, interleaved runs of benchmarks/serve_load.py, 2 threads
    48-52 requests/s, 3 threads 55-59 (four: no better)."""
    return (os.cpu_count() or 1) + 1


def model_meta(rec: EmotionRecognizer) -> dict[str, Any]:
    """The recognizer's checkpoint metadata without weights, JSON-safe, plus what serves it.

    No path of this machine or the training one reaches clients: paths become file names."""
    meta = {k: v for k, v in rec.meta.items() if k not in ("state_dict", "model", "optimizer")}
    out = _json_safe(meta)
    out["source"] = Path(rec.source).name  # the file name only: no server paths to clients
    out["backend"] = rec.backend
    out["temperature_in_use"] = rec.temperature
    out["input"] = rec.spec.to_meta()  # what the model takes, as the recognizer reads it
    out["framing_in_use"] = rec.framing.to_dict()  # how this server's detector boxes are cut
    return out


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_json_safe(v) for v in value]
    if isinstance(value, str) and (os.path.isabs(value) or value.startswith(("./", "../", "~"))):
        return Path(value).name  # a training machine's path (data, parent): its name only
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if hasattr(value, "tolist") and hasattr(value, "shape"):  # numpy arrays, torch tensors
        small = math.prod(value.shape) <= 1024  # a few numbers, not weights
        return _json_safe(value.tolist()) if small else f"<array {tuple(value.shape)}>"
    return str(value)


def _infer(
    rec: EmotionRecognizer,
    data: bytes,
    max_pixels: int,
    queued_at: float,
    face_filter: FaceFilter | None = None,
) -> dict:
    """The response body: `Result.to_dict()` (what `ferkit predict --json` prints for a
    file) with the model's labels, and the time spent queueing and decoding the upload."""
    t0 = time.perf_counter()
    frame = decode_image(data, max_side=rec.max_side, max_pixels=max_pixels)
    t1 = time.perf_counter()
    out = rec.predict(frame, face_filter=face_filter).to_dict()
    del out["file"]  # "upload": nothing to tell the client
    timings = out.pop("timing_ms")
    timings["decode"] = round(timings["decode"] + (t1 - t0) * 1000, 2)
    out["labels"] = list(rec.labels)
    out["timing_ms"] = {"queue": round((t0 - queued_at) * 1000, 2), **timings}
    return out
