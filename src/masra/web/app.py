"""The HTTP side of ``masra serve``: the page, its static files, the JSON API and the video files.

    GET  /                      the page
    GET  /api/info              limits, the --videos listing, the checkpoint's name
    POST /api/uploads?name=F    the raw video bytes as the body → the checked video
    POST /api/jobs              {"video": "library/NAME" | "upload/ID", "query": "..."} → {"job": ID}
    GET  /api/jobs/ID           the job's state, stage, progress, ETA, and its result or error message
    GET  /media/library/NAME    a --videos file  (HTTP range requests, so the page can seek)
    GET  /media/upload/ID       an uploaded file (same)

Every refusal is JSON ``{"error": "one sentence"}`` with a 4xx status; nothing returns a stack trace.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware
from pydantic import BaseModel

from masra.web.errors import RequestError
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

    Requests that change something (POST) are refused when they come from another site's page (their
    ``Origin`` is not this server). ``allowed_hosts`` (the names this machine is reached by when serving on
    a loopback address) also refuses DNS-rebinding requests, whose ``Host`` is the attacker's name."""
    uploads = UploadStore(limits.max_upload_bytes, limits.max_uploads, limits.max_duration)
    runner = JobRunner()

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        runner.shutdown()
        uploads.close()

    app = FastAPI(title="masra", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.uploads = uploads
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)

    @app.middleware("http")
    async def same_origin_only(request: Request, call_next):
        origin = request.headers.get("origin")
        # host:port only, so that a TLS-terminating proxy in front (https origin, http here) still works
        if request.method == "POST" and origin is not None and origin.partition("://")[2] != request.url.netloc:
            return JSONResponse({"error": "requests from other sites' pages are refused"}, status_code=403)
        return await call_next(request)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.exception_handler(RequestError)
    async def request_error(_: Request, err: RequestError) -> JSONResponse:
        return JSONResponse({"error": err.message}, status_code=err.status)

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
        video = resolve(request.video)
        job = runner.submit(f"{video.name}: {query!r}", lambda progress: service.ground(video, query, progress))
        return {"job": job.id}

    @app.get("/api/jobs/{job_id}")
    def job_status(job_id: str) -> dict[str, Any]:
        return runner.status(job_id)

    @app.get("/media/library/{name}")
    def library_file(name: str) -> FileResponse:
        return FileResponse(library.path(name))

    @app.get("/media/upload/{upload_id}")
    def upload_file(upload_id: str) -> FileResponse:
        return FileResponse(uploads.get(upload_id).path)

    def resolve(ref: str) -> Video:
        kind, _, key = ref.partition("/")
        if kind == "library" and key:
            return library.get(key)
        if kind == "upload" and key:
            return uploads.get(key)
        raise RequestError(400, "choose a video: upload one or pick one from the list")

    return app
