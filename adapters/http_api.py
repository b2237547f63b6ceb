"""The HTTP API and the web pages: thin handlers over :class:`kodr_core.service.Service`.

Every request and response body is a pydantic model, so the OpenAPI schema at
``/api/openapi.json`` is the contract (schemathesis checks it). kodr's errors map
to statuses at this edge: refused input 400/422, no such run 404, a run in the
wrong state 409, the store unavailable 503; each answer is JSON that names the
field at fault. Handlers are plain ``def`` (FastAPI runs them in its threadpool),
since the store is synchronous.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, cast

from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.base import BaseHTTPMiddleware

from adapters import upload
from adapters.scrubbing import ScrubbingLog
from adapters.workspace import DiskWorkspace
from kodr_core.artifacts import render
from kodr_core.errors import (
    KodrError,
    RefusedInput,
    RunLocked,
    RunNotFound,
    StoreUnavailable,
    UsageError,
)
from kodr_core.machine import TRANSITIONS
from kodr_core.options import RunOptions
from kodr_core.secrets import Scrubber
from kodr_core.service import (
    EventView,
    Metrics,
    ReplayView,
    RunConflict,
    RunPage,
    RunSummary,
    Service,
)
from kodr_core.states import TERMINAL, State
from store.event_store import EventStore
from store.queue import RunQueue

WEB = Path(__file__).parent / "web"
MAX_JSON_BYTES = 1 << 20


class Problem(BaseModel):
    """Every error answer: what went wrong and, when one is to blame, which field."""

    error: str
    field: str | None = None


class RequestOptions(BaseModel):
    """The run options a client may set, named as the recorded run options are."""

    model_config = ConfigDict(extra="forbid")

    provider: str | None = Field(default=None, max_length=64)
    base_url: str | None = Field(default=None, max_length=2048)
    model: str | None = Field(default=None, max_length=256)
    test_command: str | None = Field(default=None, max_length=512)
    install: bool | None = None
    heal: bool | None = None
    max_turns: int | None = Field(default=None, ge=0, le=50)
    model_timeout_s: float | None = Field(default=None, ge=0.1, le=86400)
    stall_timeout_s: float | None = Field(default=None, ge=0.1, le=86400)
    repair_timeout_s: float | None = Field(default=None, ge=0.1, le=86400)
    install_timeout_s: float | None = Field(default=None, ge=0.1, le=86400)
    test_timeout_s: float | None = Field(default=None, ge=0.1, le=86400)
    run_deadline_s: float | None = Field(default=None, ge=1, le=7 * 86400)
    off_target: Literal["strict", "lenient", "off"] | None = None
    tools: bool | None = None
    tool_steps: int | None = Field(default=None, ge=1, le=50)

    def to_run_options(self) -> RunOptions:
        return RunOptions(**{k: v for k, v in self.model_dump().items() if v is not None})


class RunRequest(BaseModel):
    """``POST /api/runs``: the ``request`` part of a multipart upload, or the whole JSON body."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(..., min_length=1, max_length=100_000)
    mode: Literal["run", "heal"] = "run"
    options: RequestOptions = Field(default_factory=lambda: RequestOptions())
    workspace_path: str | None = Field(
        default=None, max_length=4096, description="JSON only: a directory on the server"
    )


class Created(BaseModel):
    run_id: str
    state: str


class Health(BaseModel):
    ok: bool
    store: str


_STATUS = [
    (RunNotFound, 404),
    (RunConflict, 409),
    (RunLocked, 409),
    (StoreUnavailable, 503),
    (UsageError, 400),
    (RefusedInput, 400),
]


def _problem(status: int, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse(Problem(error=message, field=field).model_dump(), status_code=status)


def _field_of(message: str) -> str | None:
    head = message.split(":", 1)[0]
    return head if head and " " not in head and len(head) < 64 else None


class _Token(BaseHTTPMiddleware):
    """With a token configured every call but /healthz needs ``Authorization: Bearer <token>``
    (pages also accept the ``kodr_token`` cookie that ``/login?token=`` sets)."""

    def __init__(self, app: Any, token: str) -> None:
        super().__init__(app)
        self.token = token

    async def dispatch(self, request: Request, call_next: Any) -> Response:
        if request.url.path in ("/healthz", "/login"):
            passed: Response = await call_next(request)
            return passed
        auth = request.headers.get("authorization", "")
        given = auth[7:] if auth.lower().startswith("bearer ") else request.cookies.get("kodr_token", "")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return _problem(401, "missing or wrong bearer token", "Authorization")
        response: Response = await call_next(request)
        return response


def create_app(store: EventStore, *, token: str | None = None, roots: Sequence[Path] = ()) -> FastAPI:
    """``roots``: the directories a JSON request's ``workspace_path`` may name (none: uploads only)."""
    allowed = [Path(r).resolve() for r in roots]
    # a request is recorded through the same scrubbing as every run's blobs and events
    svc = Service(cast(RunQueue, ScrubbingLog(RunQueue(store), Scrubber.of_env(os.environ))), actor="http")
    app = FastAPI(title="kodr", version="1", openapi_url="/api/openapi.json", docs_url="/api/docs", redoc_url=None)
    templates = Jinja2Templates(directory=str(WEB / "templates"))
    app.state.service = svc
    if token:
        app.add_middleware(_Token, token=token)

    @app.exception_handler(KodrError)
    async def _kodr_error(request: Request, exc: KodrError) -> JSONResponse:
        status = next((s for cls, s in _STATUS if isinstance(exc, cls)), 400)
        return _problem(status, exc.message, getattr(exc, "field", None) or _field_of(exc.message))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")]
        return _problem(422, f"{'.'.join(loc) or 'request'}: {first.get('msg', 'invalid')}", ".".join(loc) or None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        resp = _problem(exc.status_code, str(exc.detail))
        resp.headers.update(exc.headers or {})
        if exc.status_code == 405:  # Starlette names only the first matching route's methods
            methods = {
                m
                for r in app.routes
                if isinstance(r, APIRoute) and r.path_regex.match(request.url.path)
                for m in (r.methods or ())
            }
            resp.headers["Allow"] = ", ".join(sorted(methods))
        return resp

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:  # never a bare 500 page
        return _problem(500, f"internal error: {type(exc).__name__}")

    errors: dict[int | str, dict[str, Any]] = {
        400: {"model": Problem},
        404: {"model": Problem},
        409: {"model": Problem},
        422: {"model": Problem},
        401: {"model": Problem},
        503: {"model": Problem},
    }

    # -- submitting --------------------------------------------------------------------
    @app.post(
        "/api/runs",
        status_code=201,
        response_model=Created,
        responses={**errors, 413: {"model": Problem}, 415: {"model": Problem}},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": RunRequest.model_json_schema(ref_template="#/components/schemas/{model}")
                    },
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["request", "workspace"],
                            "properties": {
                                "request": {"type": "string", "description": "RunRequest as JSON"},
                                "workspace": {
                                    "type": "string",
                                    "format": "binary",
                                    "description": ".tar.gz of the project",
                                },
                            },
                        }
                    },
                },
            }
        },
    )
    async def create_run(request: Request) -> Any:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "application/json":
            raw = await request.body()
            if len(raw) > MAX_JSON_BYTES:
                return _problem(413, f"body is over {MAX_JSON_BYTES} bytes", "body")
            req = _parse_request(raw)
            if not req.workspace_path:
                return _problem(
                    422, "workspace_path: required for a JSON request (or upload a workspace)", "workspace_path"
                )
            path = Path(req.workspace_path)
            if path.is_absolute() and not any(path.resolve().is_relative_to(r) for r in allowed):
                return _problem(
                    422,
                    f"workspace_path: {req.workspace_path!r} is not under a directory this "
                    "server shares (kodr serve --workspace)",
                    "workspace_path",
                )
            if not path.is_absolute() or not path.is_dir():
                return _problem(
                    422,
                    f"workspace_path: {req.workspace_path!r} is not an absolute directory on the server",
                    "workspace_path",
                )
            s = await asyncio.to_thread(
                svc.request, req.task, req.mode, req.options.to_run_options(), DiskWorkspace(path)
            )
            return Created(run_id=s.run_id, state=s.state)
        if kind == "multipart/form-data":
            form = await request.form(max_files=1, max_fields=4)
            part, archive = form.get("request"), form.get("workspace")
            if not isinstance(part, str):
                return _problem(422, "request: a JSON form field is required", "request")
            req = _parse_request(part.encode())
            if req.workspace_path:
                return _problem(422, "workspace_path: not with an uploaded workspace", "workspace_path")
            if archive is None or isinstance(archive, str):
                return _problem(422, "workspace: a .tar.gz file part is required", "workspace")
            data = await archive.read(upload.MAX_ARCHIVE_BYTES + 1)
            return await asyncio.to_thread(_request_upload, svc, req, data)
        return _problem(415, "send multipart/form-data (request + workspace) or application/json", "Content-Type")

    # -- reading ---------------------------------------------------------------------------
    @app.get("/api/runs", response_model=RunPage, responses=errors)
    def list_runs(
        state: Annotated[State | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> RunPage:
        return svc.list_runs(state.value if state else None, limit, offset)

    @app.get("/api/runs/{run_id}", response_model=RunSummary, responses=errors)
    def show_run(run_id: str) -> RunSummary:
        return svc.show(run_id)

    @app.get("/api/runs/{run_id}/events", response_model=list[EventView], responses=errors)
    def run_events(run_id: str, after: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0) -> list[EventView]:
        return svc.events(run_id, after)

    @app.get("/api/runs/{run_id}/explain", response_model=dict[str, Any], responses=errors)
    def run_explain(run_id: str) -> dict[str, Any]:
        return svc.explain(run_id)

    @app.get("/api/runs/{run_id}/replay", response_model=ReplayView, responses=errors)
    def run_replay(run_id: str) -> ReplayView:
        return svc.replay(run_id)

    @app.get(
        "/api/runs/{run_id}/artifacts/{path:path}",
        responses={**errors, 200: {"content": {"application/octet-stream": {}}}},
    )
    def run_artifact(run_id: str, path: str) -> Response:
        records, run = svc.fold(run_id)
        files = render(run.run_id, records, svc.queue.get_blob)
        if path not in files:
            raise RunNotFound(f"path: run {run.run_id} has no artifact {path!r} (it has: {', '.join(sorted(files))})")
        kind = "application/json" if path.endswith(".json") else "text/plain; charset=utf-8"
        return Response(files[path], media_type=kind)

    @app.get("/api/runs/{run_id}/workspace.tar.gz", responses={**errors, 200: {"content": {"application/gzip": {}}}})
    def run_workspace(run_id: str, at: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None) -> Response:
        manifest = svc.manifest(run_id, at)
        data = upload.pack(Path("."), list(manifest), lambda p: svc.queue.get_blob(manifest[p]))
        return Response(
            data,
            media_type="application/gzip",
            headers={"Content-Disposition": f'attachment; filename="{svc.queue.resolve(run_id)}.tar.gz"'},
        )

    @app.get("/api/runs/{run_id}/stream", responses={**errors, 200: {"content": {"text/event-stream": {}}}})
    async def run_stream(
        run_id: str,
        after: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> StreamingResponse:
        real = await asyncio.to_thread(svc.queue.resolve, run_id)
        start = after or 0
        if last_event_id and last_event_id.strip().isdigit():
            start = max(start, int(last_event_id.strip()))
        return StreamingResponse(
            _sse(svc, real, start),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    # -- acting ------------------------------------------------------------------------------
    @app.post("/api/runs/{run_id}/cancel", response_model=RunSummary, responses=errors)
    def cancel_run(run_id: str) -> RunSummary:
        return svc.cancel(run_id)

    @app.post("/api/runs/{run_id}/resume", response_model=RunSummary, status_code=202, responses=errors)
    def resume_run(run_id: str) -> RunSummary:
        return svc.resume(run_id, time.time())

    # -- operations ------------------------------------------------------------------------------
    @app.get("/healthz", response_model=Health, responses={503: {"model": Problem}})
    def healthz() -> Health:
        svc.queue.queue_depth()
        return Health(ok=True, store=store.engine.dialect.name)

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> str:
        return prometheus(svc.metrics())

    @app.get("/login", include_in_schema=False)
    def login(token_: Annotated[str, Query(alias="token")] = "") -> Response:
        resp = Response(status_code=303, headers={"Location": "/"})
        if token and hmac.compare_digest(token_.encode(), token.encode()):
            resp.set_cookie("kodr_token", token_, httponly=True, samesite="strict")
        return resp

    # -- pages ------------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def runs_page(request: Request) -> Response:
        return templates.TemplateResponse(request, "runs.html", {"page": svc.list_runs(None, 200, 0)})

    @app.get("/runs/{run_id}", response_class=HTMLResponse, include_in_schema=False)
    def run_page(request: Request, run_id: str) -> Response:
        _, run = svc.fold(run_id)
        views = svc.events(run.run_id)
        ctx = {
            "run": svc.show(run.run_id),
            "x": svc.explain(run.run_id),
            "diffs": {d.turn: d for d in svc.turn_diffs(run.run_id)},
            "events": views,
            "pretty": lambda d: json.dumps(d, indent=2, sort_keys=True, default=str),
            "machine": machine_view(run.transitions, run.state.value),
            "terminal": run.state in TERMINAL,
        }
        return templates.TemplateResponse(request, "run.html", ctx)

    return app


def _parse_request(raw: bytes) -> RunRequest:
    try:
        return RunRequest.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "request"
        raise UsageError(f"{loc}: {first['msg']}") from None


def _request_upload(svc: Service, req: RunRequest, data: bytes) -> Created:
    tmp = Path(tempfile.mkdtemp(prefix="kodr-upload-"))
    try:
        upload.extract(data, tmp / "ws")
        s = svc.request(req.task, req.mode, req.options.to_run_options(), DiskWorkspace(tmp / "ws"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Created(run_id=s.run_id, state=s.state)


async def _sse(svc: Service, run_id: str, after: int):  # type: ignore[no-untyped-def]
    """The run's events after ``after``, then each new one as it is committed; ends after the terminal one."""
    seq = after
    idle = 0.0
    terminal = {s.value for s in TERMINAL}
    while True:
        views = await asyncio.to_thread(svc.events, run_id, seq)
        for v in views:
            yield f"id: {v.seq}\nevent: {v.type}\ndata: {v.model_dump_json()}\n\n"
            seq = v.seq
        if views:
            idle = 0.0
            last = views[-1]
            if last.type == "StateChanged" and last.data.get("to_state") in terminal:
                return
        else:
            run = await asyncio.to_thread(svc.queue.get_run, run_id)
            if run is not None and run.state in terminal and run.last_seq <= seq:
                return
            idle += 0.25
            if idle >= 15:
                idle = 0.0
                yield ": keep-alive\n\n"
        await asyncio.sleep(0.25)


def machine_view(transitions: Any, current: str) -> dict[str, Any]:
    """The machine's states and transitions, marked with this run's path (for the run page)."""
    taken = [(t.from_state, t.trigger, t.to_state) for t in transitions]
    visited = {s for a, _, b in taken for s in (a, b)} | {current}
    edges = []
    for trigger, sources, dest in TRANSITIONS:
        for src in sources:
            n = [i + 1 for i, (a, tr, b) in enumerate(taken) if (a, tr, b) == (str(src), trigger, str(dest))]
            edges.append({"from": str(src), "trigger": trigger, "to": str(dest), "steps": n})
    return {
        "states": [
            {"name": s.value, "visited": s.value in visited, "current": s.value == current, "terminal": s in TERMINAL}
            for s in State
        ],
        "edges": edges,
        "path": taken,
    }


def prometheus(m: Metrics) -> str:
    lines = ["# HELP kodr_runs Runs by state.", "# TYPE kodr_runs gauge"]
    for s in State:
        lines.append(f'kodr_runs{{state="{s.value}"}} {m.runs_by_state.get(s.value, 0)}')
    lines += [
        "# HELP kodr_queue_depth Unfinished runs no worker holds.",
        "# TYPE kodr_queue_depth gauge",
        f"kodr_queue_depth {m.queue_depth}",
        "# HELP kodr_heal_turns Repair turns taken, over all runs.",
        "# TYPE kodr_heal_turns counter",
        f"kodr_heal_turns_total {m.heal_turns}",
        "# HELP kodr_step_seconds Duration of model calls, installs and test runs.",
        "# TYPE kodr_step_seconds summary",
    ]
    for kind, values in sorted(m.step_seconds.items()):
        lines.append(f'kodr_step_seconds_count{{step="{kind}"}} {len(values)}')
        lines.append(f'kodr_step_seconds_sum{{step="{kind}"}} {sum(values):.3f}')
    return "\n".join(lines) + "\n"
