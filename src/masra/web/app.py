"""The HTTP side of ``masra serve``: the page, its static files, the JSON API and the video files.

    GET  /                      the page
    GET  /api/info              limits, the --videos listing, the checkpoint's name
    POST /api/uploads?name=F    the raw video bytes as the body → the checked video
    POST /api/jobs              {"video": "library/NAME" | "upload/ID", "query": "..."} → {"job": ID}
    GET  /api/jobs/ID           the job's state, stage, progress, ETA, and its result or error message
    GET  /media/library/NAME    a --videos file  (HTTP range requests, so the page can seek)
    GET  /media/upload/ID       an uploaded file (same)

Every refusal is JSON ``{"error": "one sentence"}`` with a 4xx status (unknown routes, wrong methods, bad
``Host`` and byte ranges included); nothing returns a stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import asynccontextmanager
from importlib.resources import files
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from masra.web.errors import RequestError
from masra.web.hosts import request_host
from masra.web.jobs import INTERNAL_ERROR, JobRunner
from masra.web.limits import ServeLimits
from masra.web.media import UploadStore, Video, VideoLibrary
from masra.web.service import GroundingService

logger = logging.getLogger("masra.web")

STATIC = files("masra.web").joinpath("static")


class JobRequest(BaseModel):
    video: str
    query: str


def create_app(
    service: GroundingService,
    library: VideoLibrary,
    limits: ServeLimits,
    title: str,
    allowed_hosts: list[str] | None = None,
) -> FastAPI:
    """The application; its upload folder is created here and deleted when the server shuts down.

    ``allowed_hosts`` (:func:`masra.web.hosts.host_names`; None: any) are the names a request's ``Host`` may
    carry: any other is refused, so a DNS-rebinding page (whose ``Host`` is the attacker's name) gets nothing.
    Requests that change something (POST) are refused when they come from another site's page (their
    ``Origin`` is not this server)."""
    uploads = UploadStore(limits.max_upload_bytes, limits.max_uploads, limits.max_duration,
                          limits.max_concurrent_uploads)
    runner = JobRunner(max_queued=limits.max_queued_jobs)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        runner.shutdown()
        uploads.close()

    app = FastAPI(title="masra", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.uploads = uploads

    # Middleware added later runs first: the Host check, then the Origin check, then the routes.
    @app.middleware("http")
    async def errors_as_json(request: Request, call_next):
        """Answers that Starlette writes itself as plain text (a byte range outside the file) become JSON."""
        response = await call_next(request)
        if response.status_code < 400 or response.headers.get("content-type", "").startswith("application/json"):
            return response
        body = b"".join([chunk async for chunk in response.body_iterator]).decode("utf-8", "replace").strip()
        message = ("the requested byte range lies outside the file" if response.status_code == 416
                   else body or HTTPStatus(response.status_code).phrase)
        kept = {k: v for k, v in response.headers.items() if k in ("allow", "content-range")}
        return JSONResponse({"error": message}, status_code=response.status_code, headers=kept)

    @app.middleware("http")
    async def same_origin_only(request: Request, call_next):
        origin = request.headers.get("origin")
        # host:port only, so that a TLS-terminating proxy in front (https origin, http here) still works
        if request.method == "POST" and origin is not None and origin.partition("://")[2] != request.url.netloc:
            return JSONResponse({"error": "requests from other sites' pages are refused"}, status_code=403)
        return await call_next(request)

    if allowed_hosts is not None:
        known = set(allowed_hosts)

        @app.middleware("http")
        async def known_hosts_only(request: Request, call_next):
            host = request_host(request.headers.get("host"))
            if host is None:
                return JSONResponse({"error": "the request has no valid Host header"}, status_code=400)
            if host not in known:
                return JSONResponse({"error": f"this server does not answer to the host name {host} "
                                              f"(masra serve --allowed-host {host} adds it)"}, status_code=400)
            return await call_next(request)

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.exception_handler(RequestError)
    async def request_error(_: Request, err: RequestError) -> JSONResponse:
        return JSONResponse({"error": err.message}, status_code=err.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        """The router's own refusals (no such route, wrong method) and the static files' 404."""
        message = {404: f"no such page: {request.url.path}",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(err.status_code, str(err.detail))
        return JSONResponse({"error": message}, status_code=err.status_code, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, err: RequestValidationError) -> JSONResponse:
        fields = ", ".join(".".join(str(p) for p in e["loc"][1:]) or "body" for e in err.errors())
        return JSONResponse({"error": f"malformed request ({fields})"}, status_code=422)

    @app.exception_handler(Exception)
    async def crash(_: Request, err: Exception) -> JSONResponse:
        logger.error("request failed", exc_info=err)
        return JSONResponse({"error": INTERNAL_ERROR}, status_code=500)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(str(STATIC.joinpath("index.html")), media_type="text/html")

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        return {"title": title, "limits": limits.as_dict(), "videos": library.listing()}

    @app.post("/api/uploads")
    async def upload(request: Request, name: str = "") -> dict[str, Any]:
        display = name.replace("\\", "/").rsplit("/", 1)[-1].strip() or "the upload"
        length = request.headers.get("content-length")
        video = await uploads.save(display, request.stream(), int(length) if length and length.isdigit() else None)
        logger.info("upload %s: %s, %.1f s", video.ref, video.name, video.duration)
        return video.as_dict()

    @app.post("/api/jobs", status_code=202)
    def submit(request: JobRequest) -> dict[str, str]:
        query = " ".join(request.query.split())
        if not query:
            raise RequestError(400, "type a query first (for example: a man rides a bike)")
        if len(query) > limits.max_query_chars:
            raise RequestError(400, f"the query is {len(query)} characters long; this server takes at most "
                                    f"{limits.max_query_chars}")
        video, release = hold(request.video)
        try:
            job = runner.submit(f"{video.name}: {query!r}", lambda progress: service.ground(video, query, progress),
                                on_finish=release)
        except BaseException:
            release()
            raise
        return {"job": job.id}

    @app.get("/api/jobs/{job_id}")
    def job_status(job_id: str) -> dict[str, Any]:
        return runner.status(job_id)

    @app.get("/media/library/{name}")
    def library_file(name: str) -> FileResponse:
        return FileResponse(library.get(name).path)  # checked: inside --videos, and a video the server takes

    @app.get("/media/upload/{upload_id}")
    def upload_file(upload_id: str) -> FileResponse:
        return FileResponse(uploads.get(upload_id).path)

    def hold(ref: str) -> tuple[Video, Callable[[], None]]:
        """The video a job names, and what to call when the job no longer needs it (an upload is kept
        on disk until then)."""
        kind, _, key = ref.partition("/")
        if kind == "library" and key:
            return library.get(key), lambda: None
        if kind == "upload" and key:
            return uploads.acquire(key), lambda: uploads.release(key)
        raise RequestError(400, "choose a video: upload one or pick one from the list")

    return app
