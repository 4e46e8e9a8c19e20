"""Reading an upload: the image bytes of a request (multipart, base64 JSON or a raw body),
its face options, and decoding them into a `Frame` as files are decoded (`decode_image`, run
in a worker thread). Each failure is an `ApiError` with the status a client can act on.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import replace

from fastapi import Request
from starlette.datastructures import UploadFile

from ferkit.detection.boxes import FaceFilter
from ferkit.detection.frames import Frame, load_frame
from ferkit.errors import ConfigError
from ferkit.imaging import ImageError, ImageTooLargeError, NotAnImageError
from ferkit.inference.recognizer import EmotionRecognizer
from ferkit.serve.errors import ApiError

# The request body of POST /v1/predict, for the OpenAPI schema (FastAPI cannot infer it:
# the route reads the request itself to accept all three kinds).
PREDICT_BODY = {
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


FACE_OPTIONS = {"min_face_score": float, "min_face_size": float, "max_faces": int}


def query_face_filter(rec: EmotionRecognizer, request: Request) -> FaceFilter | None:
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


async def read_image_bytes(request: Request) -> bytes:
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
    except NotAnImageError as exc:  # "upload: what it is, what ferkit reads"
        raise ApiError(415, "not_an_image", str(exc)) from None
    except ImageError as exc:
        raise ApiError(422, "corrupt_image", str(exc)) from None
