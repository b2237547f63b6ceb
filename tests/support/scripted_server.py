"""A scripted OpenAI-compatible server on loopback, so tests speak real HTTP.

Each POST /v1/chat/completions is answered with the next scripted turn (SSE when
the request asks for ``stream``), every request is recorded, and misbehaviour a
real server shows can be scripted: error statuses, hangs, slow streams, exact
chunks (Ollama-style whole tool calls), ignoring ``stream``.

It is also the quirk server: ``Turn(raw_body=...)`` sends exact bytes as a 200
answer (anything a hostile server can send), and ``routes`` answers other paths
(``/models``, ``/props``, ``/api/show``, or ``""`` for every unknown path) with
a handler; ``endless``, ``html_page`` and ``json_route`` are ready-made ones.

``srv.requests`` holds the chat-completion requests (one per scripted turn
consumed, so ``requests[1]`` is the second model call even when the client first
asked ``GET /models``); ``srv.all_requests`` holds everything, GETs included.
Each is ``{"method", "path", "headers", "body"}``.

    with ScriptedServer(["hello", Turn(status=429, headers={"Retry-After": "0"})]) as srv:
        client = OpenAIChatClient(ProviderConfig("test", srv.base_url, model="m"))
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

AUTO: Any = "auto"


@dataclass
class Turn:
    """One scripted answer. Plain strings and envelope dicts in a script become ``Turn(content=...)``."""

    content: str | None = None
    reasoning: str | None = None
    reasoning_field: str = "reasoning_content"  # or "reasoning" / "thinking"
    tool_calls: list[dict[str, Any]] | None = None  # [{"name", "arguments": dict|str, "id"?}]
    finish_reason: str | None = None  # default: "tool_calls" when there are calls, else "stop"
    status: int = 200
    error: str | None = None  # the error message for status >= 400
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False  # accept, read the request, never send a byte until the server stops
    hang_after_chunks: int | None = None  # stream this many events, then go silent
    delay_s: float = 0.0  # before the status line
    slow_chunks: tuple[int, float] | None = None  # (content pieces, seconds between events)
    raw_chunks: list[str | dict[str, Any]] | None = None  # exact SSE data payloads
    done: bool = True  # send ``data: [DONE]`` after raw_chunks
    ignore_stream: bool = False  # answer plain JSON even when a stream was asked for
    usage: dict[str, Any] | None = AUTO  # None: send no usage at all
    model: str | None = None
    raw_body: bytes | None = None  # exact bytes after a 200 header (Content-Type from headers, else SSE)


Route = Callable[["_Handler"], None]


def json_route(payload: Any, status: int = 200) -> Route:
    """A handler answering ``payload`` as JSON."""
    return lambda h: h._json(status, payload)


def html_page(status: int = 404, text: str = "<html><body><h1>Not Found</h1></body></html>") -> Route:
    """A handler answering an HTML page, as a web server that is not a model server does."""

    def handle(h: _Handler) -> None:
        data = text.encode()
        h.send_response(status)
        h.send_header("Content-Type", "text/html")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    return handle


def endless(chunk: bytes = b'{"data": [' + b'{"id": "m"},' * 1000, interval_s: float = 0.0) -> Route:
    """A handler whose 200 body never ends (until the server stops or the client hangs up)."""

    def handle(h: _Handler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.end_headers()
        stop = h.server.owner.stop_event
        try:
            while not stop.is_set():
                h.wfile.write(chunk)
                h.server.owner.bytes_sent += len(chunk)
                if interval_s and stop.wait(interval_s):
                    return
        except (BrokenPipeError, ConnectionResetError):
            return

    return handle


def as_turn(item: str | dict[str, Any] | Turn) -> Turn:
    if isinstance(item, Turn):
        return item
    if isinstance(item, dict):
        return Turn(content=json.dumps(item))
    return Turn(content=item)


def _split(text: str, n: int) -> list[str]:
    if not text:
        return []
    n = max(1, min(n, len(text)))
    size = -(-len(text) // n)
    return [text[i : i + size] for i in range(0, len(text), size)]


def _calls(turn: Turn) -> list[dict[str, Any]]:
    out = []
    for i, call in enumerate(turn.tool_calls or []):
        fn = call.get("function", call)
        args = fn.get("arguments", {})
        out.append(
            {
                "id": call.get("id") or f"call_{i}",
                "type": "function",
                "function": {"name": fn["name"], "arguments": args if isinstance(args, str) else json.dumps(args)},
            }
        )
    return out


def _usage(turn: Turn) -> dict[str, Any] | None:
    if turn.usage is not AUTO:
        return turn.usage
    completion = max(1, len(turn.content or "") // 4)
    return {"prompt_tokens": 12, "completion_tokens": completion, "total_tokens": 12 + completion}


def completion_json(turn: Turn, model: str) -> dict[str, Any]:
    """The non-streamed answer for a turn."""
    message: dict[str, Any] = {"role": "assistant", "content": turn.content}
    if turn.reasoning is not None:
        message[turn.reasoning_field] = turn.reasoning
    calls = _calls(turn)
    if calls:
        message["tool_calls"] = calls
    finish = turn.finish_reason or ("tool_calls" if calls else "stop")
    body = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
    }
    usage = _usage(turn)
    if usage is not None:
        body["usage"] = usage
    return body


def stream_events(turn: Turn, model: str, include_usage: bool) -> list[str]:
    """The SSE data payloads for a turn, OpenAI-style (tool call arguments arrive in pieces)."""
    if turn.raw_chunks is not None:
        events = [c if isinstance(c, str) else json.dumps(c) for c in turn.raw_chunks]
        return events + (["[DONE]"] if turn.done else [])
    base = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        return json.dumps({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({turn.reasoning_field: p}) for p in _split(turn.reasoning or "", 3)]
    pieces = turn.slow_chunks[0] if turn.slow_chunks else 4
    events += [chunk({"content": p}) for p in _split(turn.content or "", pieces)]
    calls = _calls(turn)
    for i, call in enumerate(calls):
        name = call["function"]["name"]
        head = {"index": i, "id": call["id"], "type": "function", "function": {"name": name, "arguments": ""}}
        events.append(chunk({"tool_calls": [head]}))
        for p in _split(call["function"]["arguments"], 3):
            events.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": p}}]}))
    events.append(chunk({}, turn.finish_reason or ("tool_calls" if calls else "stop")))
    usage = _usage(turn)
    if include_usage and usage is not None:
        events.append(json.dumps({**base, "choices": [], "usage": usage}))
    return events + ["[DONE]"]


def _is_chat(path: str) -> bool:
    return path.split("?")[0].rstrip("/").endswith("/chat/completions")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: ScriptedServer


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _record(self, body: Any) -> None:
        request = {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
        self.server.owner._record(request)

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _route(self) -> Route | None:
        routes = self.server.owner.routes
        path = self.path.split("?")[0].rstrip("/")
        for suffix, handler in routes.items():
            if suffix and path.endswith(suffix):
                return handler
        return routes.get("")

    def do_GET(self) -> None:
        self._record(None)
        owner = self.server.owner
        route = self._route()
        if route is not None:
            route(self)
        elif self.path.rstrip("/").endswith("/models"):
            data = [{"id": m, "object": "model", "owned_by": "scripted"} for m in owner.models]
            self._json(200, {"object": "list", "data": data})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = {"_unparsed": raw.decode("utf-8", "replace")}
        self._record(body)
        owner = self.server.owner
        route = self._route()
        if route is not None and (not _is_chat(self.path) or route is not owner.routes.get("")):
            route(self)
            return
        if not _is_chat(self.path):
            self._json(404, {"error": {"message": f"no route {self.path}"}})
            return
        turn = owner._next_turn(body if isinstance(body, dict) else {})
        if turn is None:
            n = len(owner.requests)
            self._json(500, {"error": {"message": f"scripted server: script exhausted at request #{n}"}})
            return
        try:
            self._answer(turn, body if isinstance(body, dict) else {})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first; that is what some tests are about

    def _answer(self, turn: Turn, body: dict[str, Any]) -> None:
        stop = self.server.owner.stop_event
        if turn.hang:
            stop.wait()
            return
        if turn.delay_s and stop.wait(turn.delay_s):
            return
        if turn.status >= 400:
            message = turn.error or f"scripted HTTP {turn.status}"
            self._json(turn.status, {"error": {"message": message, "code": turn.status}}, turn.headers)
            return
        if turn.raw_body is not None:
            self.send_response(turn.status)
            headers = {"Content-Type": "text/event-stream", **turn.headers}
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(turn.raw_body)
            self.wfile.flush()
            return
        model = turn.model or body.get("model") or self.server.owner.models[0]
        if not body.get("stream") or turn.ignore_stream:
            self._json(turn.status, completion_json(turn, model), turn.headers)
            return
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        self.send_response(turn.status)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        for k, v in turn.headers.items():
            self.send_header(k, v)
        self.end_headers()
        interval = turn.slow_chunks[1] if turn.slow_chunks else 0.0
        for i, event in enumerate(stream_events(turn, model, include_usage)):
            if turn.hang_after_chunks is not None and i >= turn.hang_after_chunks:
                stop.wait()
                return
            if i and interval and stop.wait(interval):
                return
            self.wfile.write(f"data: {event}\n\n".encode())
            self.wfile.flush()


class ScriptedServer:
    """Background-thread HTTP server on 127.0.0.1 with a random free port."""

    def __init__(
        self,
        turns: Iterable[str | dict[str, Any] | Turn] = (),
        *,
        models: list[str] | None = None,
        responder: Callable[[dict[str, Any]], str | dict[str, Any] | Turn] | None = None,
        routes: dict[str, Route] | None = None,
    ) -> None:
        """``responder`` answers from the request body instead of the script: a deterministic
        model whose reply depends only on what it was asked (crash/resume tests need that)."""
        self.turns: deque[Turn] = deque(as_turn(t) for t in turns)
        self.responder = responder
        self.models = models or ["scripted-model"]
        self.routes: dict[str, Route] = dict(routes or {})
        self.bytes_sent = 0  # by ``endless`` routes
        self.all_requests: list[dict[str, Any]] = []
        self.stop_event = threading.Event()
        self._cond = threading.Condition()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The chat-completion requests, in arrival order."""
        with self._cond:
            return [r for r in self.all_requests if _is_chat(r["path"])]

    def add(self, *turns: str | dict[str, Any] | Turn) -> None:
        with self._cond:
            self.turns.extend(as_turn(t) for t in turns)

    def _next_turn(self, body: dict[str, Any]) -> Turn | None:
        if self.responder is not None:
            return as_turn(self.responder(body))
        with self._cond:
            return self.turns.popleft() if self.turns else None

    def _record(self, request: dict[str, Any]) -> None:
        with self._cond:
            self.all_requests.append(request)
            self._cond.notify_all()

    def wait_for_requests(self, n: int, timeout: float = 5.0, *, chat_only: bool = True) -> list[dict[str, Any]]:
        """Block until ``n`` requests (chat completions, unless ``chat_only=False``) arrived."""

        def matching() -> list[dict[str, Any]]:
            return [r for r in self.all_requests if not chat_only or _is_chat(r["path"])]

        with self._cond:
            if not self._cond.wait_for(lambda: len(matching()) >= n, timeout):
                raise AssertionError(f"expected {n} requests within {timeout}s, got {len(matching())}")
            return matching()

    def start(self) -> ScriptedServer:
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="scripted-server"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Unblock hung handlers, stop accepting, close the socket."""
        self.stop_event.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
