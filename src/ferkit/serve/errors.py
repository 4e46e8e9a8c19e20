"""How the API says no: `ApiError` (status, code, message), the request-size limit
(`BodyLimit`) and the handlers that turn every exception into a JSON body
`{"error": CODE, "detail": MSG}`; tracebacks go to the server's log only.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ferkit.errors import FerkitError
from ferkit.imaging import ImageError

log = logging.getLogger(__name__)

MB = 1024 * 1024


class ApiError(Exception):
    """An error the client caused, sent as {"error": code, "detail": message} with `status`."""

    def __init__(self, status: int, code: str, detail: str, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers


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
            response = error_response(
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


def error_response(
    status: int, code: str, detail: str, headers: dict | None = None
) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def apierror_response(_req: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.detail, exc.headers)

    @app.exception_handler(BodyLimitExceeded)
    async def body_limit(_req: Request, exc: BodyLimitExceeded) -> JSONResponse:
        return error_response(413, "too_large", str(exc))

    @app.exception_handler(ImageError)
    async def imageerror_response(_req: Request, exc: ImageError) -> JSONResponse:
        return error_response(422, "bad_image", str(exc))

    @app.exception_handler(FerkitError)
    async def ferkiterror_response(_req: Request, exc: FerkitError) -> JSONResponse:
        return error_response(422, "bad_input", str(exc))

    @app.exception_handler(HTTPException)
    async def httperror_response(_req: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validationerror_response(_req: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", str(exc.errors()))

    @app.exception_handler(Exception)
    async def internalerror_response(req: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", req.method, req.url.path, exc_info=exc)
        return error_response(
            500, "internal_error", "internal server error (details in the server log)"
        )
