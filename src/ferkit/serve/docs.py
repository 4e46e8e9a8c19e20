"""`/docs`: the API reference, from Swagger UI files that ship in a Python package.

FastAPI's own `/docs` page loads Swagger UI from a CDN, so it is blank offline; this one is
served from `swagger-ui-bundle`'s copy (installed with ferkit) under `/docs-assets`.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"


def add_docs(app: FastAPI) -> None:
    """Serve the Swagger UI page at /docs and its files at /docs-assets (create the app with
    `docs_url=None, redoc_url=None`, so FastAPI's CDN pages are not there too)."""
    from swagger_ui_bundle import swagger_ui_path

    app.mount(ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        )
