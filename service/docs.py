"""/docs (Swagger UI) and /redoc with their scripts and styles served by the service itself, from the
fastapi-offline package: FastAPI's own pages load them from a CDN, which leaves them blank where the service
has no internet (an air-gapped cluster, a laptop on a plane)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse

ASSETS = Path(str(files("fastapi_offline") / "static"))
ASSET_PREFIX = "/docs-assets"
DOCS_PATHS = {"/docs", "/docs/oauth2-redirect", "/redoc"} | {f"{ASSET_PREFIX}/{p.name}" for p in ASSETS.iterdir()}


def asset(path: Path):
    async def endpoint() -> FileResponse:
        return FileResponse(path, headers={"Cache-Control": "public, max-age=86400"})

    return endpoint


def add_docs(app: FastAPI) -> None:
    """The documentation pages and their assets (none in the OpenAPI schema). The app is made with
    docs_url=None and redoc_url=None, so FastAPI adds no CDN-backed pages of its own."""
    title = f"{app.title} - API"

    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=title, oauth2_redirect_url="/docs/oauth2-redirect",
                                   swagger_js_url=f"{ASSET_PREFIX}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSET_PREFIX}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSET_PREFIX}/favicon.png",
                                   swagger_ui_parameters={"persistAuthorization": False})

    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=app.openapi_url, title=title, redoc_js_url=f"{ASSET_PREFIX}/redoc.standalone.js",
                              redoc_favicon_url=f"{ASSET_PREFIX}/favicon.png", with_google_fonts=False)

    for path, endpoint in (("/docs", swagger_ui), ("/docs/oauth2-redirect", oauth2_redirect), ("/redoc", redoc)):
        app.add_api_route(path, endpoint, methods=["GET"], include_in_schema=False)
    for file in ASSETS.iterdir():
        app.add_api_route(f"{ASSET_PREFIX}/{file.name}", asset(file), methods=["GET"], include_in_schema=False)
