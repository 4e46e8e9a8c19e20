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
import base64
import binascii
import contextlib
import logging
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from ferkit import __version__
from ferkit.detection.boxes import FaceFilter
from ferkit.detection.frames import Frame, load_frame
from ferkit.errors import ConfigError, FerkitError
from ferkit.imaging import ImageError, ImageTooLargeError, NotAnImageError
from ferkit.inference.recognizer import EmotionRecognizer
from ferkit.serve.docs import add_docs

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
MB = 1024 * 1024
# Decoded pixels allowed per image. A 50 MP PNG already takes 150 MB as RGB; JPEGs larger
# than this are decoded at reduced scale (draft mode) instead of refused.
DEFAULT_MAX_PIXELS = 50_000_000
_PREDICT_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
                "required": ["file"],
            }
        },
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "image": {
                        "type": "string",
                        "description": "base64 image bytes, or a data: URL",
                    }
                },
                "required": ["image"],
            }
        },
        "image/*": {"schema": {"type": "string", "format": "binary"}},
    },
}


class ApiError(Exception):
    """An error the client caused, sent as {"error": code, "detail": message} with `status`."""

    def __init__(self, status: int, code: str, detail: str, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers


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
    _add_error_handlers(app)

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
        openapi_extra={"requestBody": _PREDICT_BODY},
    )
    async def predict(request: Request) -> dict:
        start = time.perf_counter()
        try:
            async with asyncio.timeout(timeout_s):
                if pending >= max_queue:  # busy: the upload is read but not parsed
                    async for _chunk in request.stream():
                        pass  # a client still sending would not see the 503
                    raise busy()
                face_filter = _face_filter(rec, request)
                data = await _read_image_bytes(request)
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


# -- reading the request ---------------------------------------------------------------------

FACE_OPTIONS = {"min_face_score": float, "min_face_size": float, "max_faces": int}


def _face_filter(rec: EmotionRecognizer, request: Request) -> FaceFilter | None:
    """The query's face options (`?min_face_score=0.9&max_faces=1`) over the recognizer's,
    or None when it gives none. A score below the detector's floor (YuNet: 0.5) finds no more."""
    query = request.query_params
    given = {k: query[k] for k in FACE_OPTIONS if k in query}
    if not given:
        return None
    values = {}
    for name, text in given.items():
        try:
            values[name] = FACE_OPTIONS[name](text)
        except ValueError:
            kind = "a whole number" if FACE_OPTIONS[name] is int else "a number"
            raise ApiError(422, "bad_option", f"{name}={text!r} is not {kind}") from None
    try:
        return replace(rec.face_filter, **values)
    except ConfigError as exc:
        raise ApiError(422, "bad_option", str(exc)) from None


async def _read_image_bytes(request: Request) -> bytes:
    """The image bytes of a multipart upload, a JSON {"image": base64} or a raw image body."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        async with request.form(max_files=1, max_fields=10) as form:  # closes spooled files
            files = [v for v in form.values() if isinstance(v, UploadFile)]
            if not files:
                raise ApiError(422, "missing_file", "no file in the form; send it as 'file'")
            upload = form.get("file") if isinstance(form.get("file"), UploadFile) else files[0]
            if upload.content_type and not _image_type(upload.content_type):
                name = upload.filename or "the upload"
                raise ApiError(
                    415, "not_an_image", f"{name} is {upload.content_type}, not an image"
                )
            data = await upload.read()
    elif ctype == "application/json":
        try:
            payload = await request.json()
            raw = payload["image"]
            if "," in raw[:100] and raw.startswith("data:"):  # a data: URL from a browser
                raw = raw.split(",", 1)[1]
            data = base64.b64decode(raw, validate=True)
        # RecursionError: JSON nested thousands deep, which json.loads cannot parse
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError, binascii.Error):
            raise ApiError(
                422, "bad_json", 'expected JSON {"image": "<base64 image bytes>"}'
            ) from None
    elif _image_type(ctype):
        data = await request.body()
    else:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"content type {ctype or '(none)'}: send "
            "multipart/form-data with a 'file', JSON {\"image\": base64}, or image/*",
        )
    if not data:
        raise ApiError(422, "empty", "the image is empty (0 bytes)")
    return data


def _image_type(ctype: str) -> bool:
    # Browsers send application/octet-stream for files whose type they do not know.
    return ctype.startswith("image/") or ctype == "application/octet-stream"


# -- decoding and inference (in a worker thread) ---------------------------------------------


def decode_image(data: bytes, *, max_side: int | None, max_pixels: int) -> Frame:
    """Decode uploaded bytes safely, upright, into a Frame, as files are (`load_frame`).

    The size is checked from the header first, so a decompression bomb is refused before
    anything, EXIF included, is decoded. EXIF orientation is applied, so boxes match the
    photo as browsers show it. Huge JPEGs are decoded at reduced scale; other images above
    `max_pixels` are refused. Boxes are mapped back to the upright upload's own pixels.

    Raises:
        ApiError: 415 not an image PIL knows, 413 too many pixels, 422 corrupt or truncated.
    """
    try:
        return load_frame(data, max_side=max_side, max_pixels=max_pixels, name="upload")
    except ImageTooLargeError as exc:
        raise ApiError(413, "too_many_pixels", str(exc)) from None
    except NotAnImageError:
        raise ApiError(
            415,
            "not_an_image",
            "the upload is not an image format ferkit reads (JPEG, PNG, WebP, BMP, GIF, TIFF, ...)",
        ) from None
    except ImageError as exc:
        raise ApiError(422, "corrupt_image", str(exc)) from None


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


# -- limits and errors -----------------------------------------------------------------------


class BodyLimitExceeded(Exception):
    """The request body grew past the limit while it was being read."""


class BodyLimit:
    """ASGI middleware: 413 before reading a body whose Content-Length is over `max_bytes`,
    and stop reading a chunked body as soon as it passes it."""

    def __init__(self, app, max_bytes: int, limit_mb: float):
        self.app, self.max_bytes, self.limit_mb = app, max_bytes, limit_mb

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            response = _error(
                413,
                "too_large",
                f"the request is {int(length) / MB:.1f} MiB; "
                f"images up to {self.limit_mb:g} MiB are accepted",
            )
            return await response(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise BodyLimitExceeded(
                    f"the request is over {self.max_bytes / MB:.1f} MiB; "
                    f"images up to {self.limit_mb:g} MiB are accepted"
                )
            return message

        return await self.app(scope, limited, send)


def _error(status: int, code: str, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_req: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.detail, exc.headers)

    @app.exception_handler(BodyLimitExceeded)
    async def body_limit(_req: Request, exc: BodyLimitExceeded) -> JSONResponse:
        return _error(413, "too_large", str(exc))

    @app.exception_handler(ImageError)
    async def image_error(_req: Request, exc: ImageError) -> JSONResponse:
        return _error(422, "bad_image", str(exc))

    @app.exception_handler(FerkitError)
    async def ferkit_error(_req: Request, exc: FerkitError) -> JSONResponse:
        return _error(422, "bad_input", str(exc))

    @app.exception_handler(HTTPException)
    async def http_error(_req: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_req: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "invalid_request", str(exc.errors()))

    @app.exception_handler(Exception)
    async def internal_error(req: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", req.method, req.url.path, exc_info=exc)
        return _error(500, "internal_error", "internal server error (details in the server log)")
