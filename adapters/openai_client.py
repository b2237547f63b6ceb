"""The one model adapter: OpenAI chat-completions over httpx, streamed, synchronous.

This module is the transport: the request body, the retry loop and bounded HTTP
exchanges. Turning bytes into a reply is :mod:`adapters.model_stream`; asking a
server what it accepts is :mod:`adapters.model_probe`.

Deadlines are enforced, not hoped for. httpx fixes a request's read timeout when
the request starts, so a server that trickles bytes and then falls silent could
keep a call alive a whole stall window past its deadline. So each exchange's HTTP
I/O runs in a daemon thread that feeds a queue, and the caller waits on that
queue for at most min(stall window, time left): a call ends at its deadline, and
the abandoned thread ends at its next chunk or its own read timeout. Every body
is size-capped (chat replies :data:`MAX_RESPONSE_BYTES`, ``/models``
:data:`MAX_MODELS_BYTES`, error bodies :data:`MAX_ERROR_BYTES`).

What is retried (a transport failure): 408/429/5xx, a dropped or refused
connection, a stream silent for a stall window, a 200 that is not a completion
(empty, malformed, an error event), and a stream that ends before any ``finish_reason`` (an answer cut
mid-way is never trusted, and a tool call from it never runs). ``Retry-After``
is honoured for as long as the call's deadline allows. What is learned (a
refusal): a 400/422 whose message names a parameter kodr sent; then the body is
degraded (``json_schema`` → ``json_object`` → prompt-only JSON,
``stream_options`` → omitted) and the learned fact is kept for the client's life
and reported in :attr:`OpenAIChatClient.learned`. Nothing else changes what
kodr thinks the server supports.

The API key is sent in the Authorization header only; it is scrubbed from
everything this module returns, raises or logs.
"""

from __future__ import annotations

import json
import queue
import random
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog

from adapters import context_window as cw
from adapters.model_stream import (
    BadStream,
    StreamAssembler,
    clean_text,
    error_text,
    loads,
)
from adapters.providers import ProviderConfig
from kodr_core.model_output import response_format_for
from kodr_core.ports import ChatReply, ChatRequest, ModelError

log = structlog.get_logger("kodr.model")

MAX_RESPONSE_BYTES = 32 * 1024 * 1024
MAX_MODELS_BYTES = 1024 * 1024
MAX_ERROR_BYTES = 64 * 1024

#: Parameters a server may refuse, each with the words that name it in an error message.
_PARAMETER_WORDS: dict[str, tuple[str, ...]] = {
    "stream_options": ("stream_options", "include_usage"),
    "response_format": ("response_format", "json_schema", "json_object", "structured output", "grammar"),
    "tools": ("tools", "tool_choice", "tool calling", "function calling"),
}
_FORMAT_LADDER = ("json_schema", "json_object", "none")


class ParameterRefused(ModelError):
    """A 400/422 that names a parameter kodr sent: the server does not support it."""

    def __init__(self, parameter: str, message: str, **kw: Any) -> None:
        super().__init__("http", message, **kw)
        self.parameter = parameter


class _Retryable(Exception):
    """A failure worth another attempt: 408/429/5xx, a dropped connection, an unfinished stream."""

    def __init__(self, record: dict[str, Any], retry_after: float | None = None) -> None:
        super().__init__(record.get("message") or record.get("error"))
        self.record = record
        self.retry_after = retry_after

    @property
    def kind(self) -> str:
        if self.record.get("stall"):
            return "timeout"
        return "http" if "status" in self.record or self.record.get("bad_reply") else "unavailable"

    def describe(self) -> str:
        if "status" in self.record:
            return f"HTTP {self.record['status']}: {self.record.get('message', '')}"
        return str(self.record["error"])


def _error_message(data: bytes) -> str:
    text = clean_text(data.decode("utf-8", "replace").strip())
    try:
        obj = loads(text)
    except ValueError:
        return text[:500] or "(empty body)"
    if isinstance(obj, dict):
        if obj.get("error"):
            return error_text(obj["error"])[:500]
        return clean_text(str(obj.get("message") or obj.get("detail") or text))[:500]
    return text[:500]


def _exchange_record(method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
    """What an exchange sent, without the conversation: the parameters that servers refuse."""
    sent: dict[str, Any] = {}
    if body:
        fmt = body.get("response_format")
        sent = {
            "stream": bool(body.get("stream")),
            "stream_options": "stream_options" in body,
            "response_format": fmt.get("type") if isinstance(fmt, dict) else None,
            "tools": len(body.get("tools") or []),
        }
    return {"method": method, "path": path, "sent": sent, "status": None}


def _hang_up(opened: list[httpx.Response]) -> None:
    """Shut an abandoned exchange's socket, so the server sees the client leave now, not at its next byte.

    Closing is not enough: a thread blocked reading the socket keeps it open;
    ``shutdown`` wakes it and sends the FIN.
    """
    for resp in opened:
        try:
            sock = resp.extensions["network_stream"].get_extra_info("socket")
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
        except (KeyError, AttributeError, OSError):
            pass


def refused_parameter(status: int, message: str, body: dict[str, Any]) -> str | None:
    """The parameter a 400/422 refuses, when its message names one the body carried.

    With ``tools`` in the body, a refusal naming tools or the response format is
    reported as ``tools``: servers refuse the pair, and the tool loop knows the
    order to back off in (the pair, then tools).
    """
    if status not in (400, 422):
        return None
    low = message.lower()

    def named(param: str) -> bool:
        return any(re.search(rf"(?<![a-z_]){re.escape(w)}(?![a-z_])", low) for w in _PARAMETER_WORDS[param])

    if "stream_options" in body and named("stream_options"):
        return "stream_options"
    if "tools" in body and (named("tools") or ("response_format" in body and named("response_format"))):
        return "tools"
    if "response_format" in body and named("response_format"):
        return "response_format"
    return None


def _retry_after(headers: httpx.Headers | dict[str, str]) -> float | None:
    headers = httpx.Headers(headers)
    if ms := headers.get("retry-after-ms"):
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError, IndexError, OverflowError):
            return None


class OpenAIChatClient:
    """ModelPort over the OpenAI chat-completions protocol; one instance per provider."""

    def __init__(
        self,
        config: ProviderConfig,
        *,
        connect_timeout: float = 10.0,
        stall_timeout_s: float = 120.0,
        deadline_s: float = 600.0,
        max_retries: int = 3,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 30.0,
        retry_after_cap_s: float | None = None,
        stream: bool = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``retry_after_cap_s`` None: a server's ``Retry-After`` is honoured whenever the deadline allows."""
        self.config = config
        self.connect_timeout = connect_timeout
        self.stall_timeout_s = stall_timeout_s
        self.deadline_s = deadline_s
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.retry_after_cap_s = retry_after_cap_s
        self.stream = stream
        parts = urlsplit(config.base_url)
        local = (parts.hostname or "") in ("localhost", "127.0.0.1", "::1")
        # Proxy variables must not hijack a server on this machine. Plain HTTP to it never
        # uses TLS (no proxy, no redirects followed), so skip loading the CA bundle (~30 ms).
        self._http = httpx.Client(
            transport=transport,
            trust_env=not local,
            follow_redirects=False,
            verify=not (local and parts.scheme == "http"),
        )
        self._model: str | None = config.model
        #: What the server refused so far: the response_format mode in use, whether stream_options is sent.
        self.format_mode = "json_schema"
        self.stream_options = True
        #: Every fallback learned from a refusal, in order: {"parameter", "from", "to", "status", "message"}.
        self.learned: list[dict[str, Any]] = []
        self._window: int | None = None
        self._window_asked = False
        #: A failure of the model lookup made while asking the window: the next call reports it at once
        #: instead of waiting out the same /models a second time.
        self._lookup_error: ModelError | None = None
        self._listing: Any = None
        #: The last exchanges, for ``kodr probe`` and debugging: method, path, what was sent, the status.
        self.exchanges: list[dict[str, Any]] = []

    def __repr__(self) -> str:
        return f"OpenAIChatClient({self.config!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OpenAIChatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the port --------------------------------------------------------------

    def request_body_for(
        self, request: ChatRequest, *, timeout_s: float | None = None, deadline: float | None = None
    ) -> dict[str, Any]:
        """The exact JSON body :meth:`complete` sends, for recording before the call."""
        if deadline is None:
            deadline = time.monotonic() + (timeout_s if timeout_s is not None else self.deadline_s)
        body: dict[str, Any] = {"model": self._model_name(deadline), "messages": list(request.messages)}
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.tools:
            body["tools"] = list(request.tools)
        fmt = response_format_for(self.config.local, bool(request.tools), request.response_schema)
        if fmt is not None and self.format_mode == "json_object":
            fmt = {"type": "json_object"}
        if fmt is not None and self.format_mode != "none":
            body["response_format"] = fmt
        if self.stream:
            body["stream"] = True
            if self.stream_options:
                body["stream_options"] = {"include_usage": True}
        return body

    def complete(self, request: ChatRequest, *, deadline_s: float | None = None) -> ChatReply:
        budget = self.deadline_s if deadline_s is None else deadline_s
        started = time.monotonic()
        deadline = started + budget
        retries: list[dict[str, Any]] = []
        if self._lookup_error is not None and self._model is None:
            err, self._lookup_error = self._lookup_error, None
            err.capabilities = self.capabilities()
            raise err
        while True:
            try:
                body = self.request_body_for(request, deadline=deadline)
            except ModelError as exc:
                exc.duration_ms = int((time.monotonic() - started) * 1000)
                exc.retries = retries + exc.retries
                raise
            try:
                reply = self._call(body, started, deadline, budget, self.max_retries, retries)
                return replace(reply, capabilities=self.capabilities())
            except ParameterRefused as exc:
                if not self._degrade(exc):
                    exc.capabilities = self.capabilities()
                    raise
                retries = exc.retries  # the refused attempt stays in the record
            except ModelError as exc:
                exc.capabilities = self.capabilities()
                raise

    def capabilities(self) -> dict[str, Any]:
        """What this client sends now and what it learned, for the record of each call."""
        return {
            "response_format": self.format_mode,
            "stream_options": self.stream_options and self.stream,
            "learned": list(self.learned),
        }

    def _degrade(self, exc: ParameterRefused) -> bool:
        """Learn from a refusal; True when there is a smaller request to try."""
        if exc.parameter == "stream_options" and self.stream_options:
            self.stream_options = False
            step = ("sent", "omitted")
        elif exc.parameter == "response_format" and self.format_mode != "none":
            nxt = _FORMAT_LADDER[_FORMAT_LADDER.index(self.format_mode) + 1]
            step, self.format_mode = (self.format_mode, nxt), nxt
        else:
            return False
        fact = {"parameter": exc.parameter, "from": step[0], "to": step[1], "message": exc.message[:300]}
        self.learned.append(fact)
        log.warning("model_capability_learned", provider=self.config.name, **fact)
        return True

    # -- one call, with retries -----------------------------------------------

    def _call(
        self,
        body: dict[str, Any],
        started: float,
        deadline: float,
        budget: float,
        max_retries: int,
        retries: list[dict[str, Any]] | None = None,
    ) -> ChatReply:
        retries = list(retries or [])
        attempt = 0

        def ms() -> int:
            return int((time.monotonic() - started) * 1000)

        while True:
            attempt += 1
            t0 = time.monotonic()
            try:
                asm = StreamAssembler()
                self._exchange("POST", "/chat/completions", body, deadline, budget, MAX_RESPONSE_BYTES, asm.feed)
                try:
                    raw, streamed = asm.finish()
                except BadStream as exc:
                    raise _Retryable({"error": str(exc), "bad_reply": True}) from None
                if streamed and not asm.finished:
                    raise _Retryable({"error": "the stream ended before a finish_reason (cut off); not trusted"})
            except _Retryable as r:
                record = {"attempt": attempt, **r.record, "duration_ms": int((time.monotonic() - t0) * 1000)}
                record = {k: (self._scrub(v) if isinstance(v, str) else v) for k, v in record.items()}
                if attempt > max_retries:
                    suffix = f" (gave up after {attempt} attempts)" if attempt > 1 else ""
                    raise ModelError(
                        r.kind, self._scrub(r.describe() + suffix), duration_ms=ms(), retries=retries + [record]
                    ) from None
                wait = self._backoff(attempt, r.retry_after)
                if time.monotonic() + wait >= deadline:
                    asked = f"the server asked to wait {wait:g}s; " if r.retry_after is not None else ""
                    why = f"{r.describe()}; {asked}no time left before the {budget:g}s deadline to retry"
                    raise ModelError(r.kind, self._scrub(why), duration_ms=ms(), retries=retries + [record]) from None
                record["wait_ms"] = int(wait * 1000)
                retries.append(record)
                log.warning("model_retry", provider=self.config.name, **record)
                time.sleep(wait)
                continue
            except ModelError as exc:
                exc.message = self._scrub(exc.message)
                exc.args = (exc.message,)
                exc.duration_ms = ms()
                if isinstance(exc, ParameterRefused):  # an attempt like any other, and the reason for the next
                    retries.append(
                        {
                            "attempt": attempt,
                            "refused": exc.parameter,
                            "message": exc.message[:200],
                            "duration_ms": int((time.monotonic() - t0) * 1000),
                        }
                    )
                exc.retries = retries + exc.retries
                raise
            if asm.problems:
                log.warning("model_protocol_problems", provider=self.config.name, problems=asm.problems)
            return ChatReply(
                content=self._scrub(asm.text()),
                reasoning=self._scrub("".join(asm.reasoning)) if asm.reasoning else None,
                tool_calls=self._redact(asm.tool_calls()),
                finish_reason=asm.finish_reason,
                usage=asm.usage,
                raw=self._redact({**raw, "stream": streamed} if streamed else raw),
                request_body=self._redact(body),
                duration_ms=ms(),
                retries=retries,
            )

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after if self.retry_after_cap_s is None else min(retry_after, self.retry_after_cap_s)
        base = min(self.backoff_max_s, self.backoff_base_s * 2.0 ** (attempt - 1))
        # Jitter within the top quarter: each wait is at least 1.5x the one before (until the cap),
        # so retries never land at a constant interval (jitter over the top half could: ~1 s, ~1 s).
        return float(base * (0.75 + random.random() / 4))

    # -- one bounded exchange ----------------------------------------------------

    def _exchange(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        deadline: float,
        budget: float,
        cap: int,
        sink: Callable[[bytes], None],
        *,
        root: bool = False,
    ) -> None:
        """One HTTP exchange, its body fed to ``sink``; bounded by ``deadline``, the stall window and ``cap``.

        Raises ModelError (timeout, oversize, a refusal as :class:`ParameterRefused`),
        or _Retryable for what another attempt may cure.
        """
        left = deadline - time.monotonic()
        if left <= 0:
            raise ModelError("timeout", f"the model call passed its {budget:g}s deadline")
        timeout = httpx.Timeout(
            connect=min(self.connect_timeout, left),
            read=min(self.stall_timeout_s, left) + 1.0,  # the worker's own exit; the caller decides first
            write=min(self.stall_timeout_s, left),
            pool=min(self.connect_timeout, left),
        )
        inbox: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        cancel = threading.Event()
        opened: list[httpx.Response] = []
        worker = threading.Thread(
            target=self._worker,
            args=(method, self._url(path, root=root), body, timeout, inbox, cancel, opened),
            daemon=True,
            name="kodr-model-call",
        )
        worker.start()
        received = 0
        ended = False
        record = _exchange_record(method, path, body)
        self.exchanges = [*self.exchanges[-49:], record]
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ModelError("timeout", f"the model call passed its {budget:g}s deadline and was cancelled")
                try:
                    item = inbox.get(timeout=min(self.stall_timeout_s, left))
                except queue.Empty:
                    if time.monotonic() >= deadline:
                        continue
                    raise _Retryable(
                        {
                            "error": f"the server sent nothing for {self.stall_timeout_s:g}s (stall timeout)",
                            "stall": True,
                        }
                    ) from None
                kind = item[0]
                if kind == "bytes" and record.get("status") is None:
                    record["status"] = 200
                if kind == "status":
                    record["status"] = item[1]
                if kind == "bytes":
                    received += len(item[1])
                    if received > cap:
                        raise ModelError("http", f"{method} {path}: the response passed {cap} bytes; gave up")
                    try:
                        sink(item[1])
                    except BadStream as exc:
                        raise _Retryable({"error": str(exc), "bad_reply": True}) from None
                elif kind == "end":
                    record.setdefault("status", 200)
                    if record["status"] is None:
                        record["status"] = 200
                    ended = True
                    return
                elif kind == "status":
                    self._raise_for_status(path, body or {}, item[1], item[2], item[3])
                elif kind == "exc":
                    record["error"] = type(item[1]).__name__
                    self._raise_for_exception(item[1], deadline, budget)
        finally:
            cancel.set()
            if not ended:
                _hang_up(opened)

    def _worker(
        self,
        method: str,
        url: str,
        body: dict[str, Any] | None,
        timeout: httpx.Timeout,
        inbox: queue.SimpleQueue[tuple[Any, ...]],
        cancel: threading.Event,
        opened: list[httpx.Response],
    ) -> None:
        try:
            kw: dict[str, Any] = {"json": body} if body is not None else {}
            with self._http.stream(method, url, headers=self._headers(), timeout=timeout, **kw) as resp:
                opened.append(resp)
                if cancel.is_set():
                    return
                if not resp.is_success:
                    data = b""
                    for chunk in resp.iter_bytes():
                        data += chunk
                        if len(data) > MAX_ERROR_BYTES or cancel.is_set():
                            break
                    inbox.put(("status", resp.status_code, dict(resp.headers), data[:MAX_ERROR_BYTES]))
                    return
                for chunk in resp.iter_bytes():
                    if cancel.is_set():
                        return
                    inbox.put(("bytes", chunk))
            inbox.put(("end",))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            inbox.put(("exc", exc))

    def _raise_for_status(
        self, path: str, body: dict[str, Any], status: int, headers: dict[str, str], data: bytes
    ) -> None:
        message = self._scrub(_error_message(data))
        overflow = cw.overflow_in(status, message, self._scrub(data.decode("utf-8", "replace")))
        if overflow is not None and path == "/chat/completions":
            raise overflow  # never a refusal, never retried as is: the caller shrinks the prompt
        if status in (408, 429) or status >= 500:
            raise _Retryable({"status": status, "message": message[:200]}, _retry_after(headers))
        param = refused_parameter(status, message, body) if path == "/chat/completions" else None
        if param is not None:
            raise ParameterRefused(param, f"HTTP {status}: {message}")
        raise ModelError("http", f"HTTP {status}: {message}")

    def _raise_for_exception(self, exc: BaseException, deadline: float, budget: float) -> None:
        if isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout)):
            if time.monotonic() >= deadline:
                raise ModelError("timeout", f"the model call passed its {budget:g}s deadline and was cancelled")
            raise _Retryable(
                {"error": f"the server sent nothing for {self.stall_timeout_s:g}s (stall timeout)", "stall": True}
            )
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
            raise _Retryable({"error": f"cannot connect to {self.config.base_url}: {exc}"})
        if isinstance(exc, (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)):
            raise _Retryable({"error": f"connection dropped: {type(exc).__name__}: {exc}"})
        if isinstance(exc, (httpx.HTTPError, httpx.InvalidURL, UnicodeError, ValueError)):
            raise ModelError("unavailable", f"{type(exc).__name__}: {exc}")
        raise exc

    # -- helpers ---------------------------------------------------------------

    def _url(self, path: str, *, root: bool = False) -> str:
        base = self.config.base_url.rstrip("/")
        if root:  # the server's own API lives beside the OpenAI-compatible /v1
            base = base.removesuffix("/v1").removesuffix("/api")
        return base + path

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream, application/json", "User-Agent": "kodr"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        return headers

    def _scrub(self, text: str) -> str:
        key = self.config.api_key
        return text.replace(key, "***") if key and len(key) >= 4 and isinstance(text, str) else text

    def _redact(self, value: Any) -> Any:
        """Deep copy with the key scrubbed from every string (cheap when it is absent)."""
        key = self.config.api_key
        if not key or key not in json.dumps(value, ensure_ascii=False, default=str):
            return value
        if isinstance(value, dict):
            return {self._scrub(k): self._redact(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._redact(v) for v in value]
        return self._scrub(value) if isinstance(value, str) else value

    def _model_name(self, deadline: float) -> str:
        if self._model is None:
            models = self.list_models(deadline=deadline)
            if not models:
                where = f"{self.config.base_url}/models"
                raise ModelError("unavailable", f"no model given and {where} lists none; pass --model")
            self._model = models[0]
        return self._model

    # -- discovery ---------------------------------------------------------------

    def _fetch(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        deadline: float,
        *,
        root: bool = False,
        retries: int | None = None,
    ) -> bytes:
        """A small bounded exchange (at most MAX_MODELS_BYTES), retried like a chat call."""
        budget = max(0.0, deadline - time.monotonic())
        attempt = 0
        while True:
            attempt += 1
            data = bytearray()
            try:
                self._exchange(method, path, body, deadline, budget, MAX_MODELS_BYTES, data.extend, root=root)
                return bytes(data)
            except _Retryable as r:
                wait = self._backoff(attempt, r.retry_after)
                if attempt > (self.max_retries if retries is None else retries) or time.monotonic() + wait >= deadline:
                    raise ModelError(r.kind, self._scrub(f"{method} {path}: {r.describe()}")) from None
                time.sleep(wait)

    def list_models(self, *, timeout_s: float | None = None, deadline: float | None = None) -> list[str]:
        """Model ids from GET /models (OpenAI shape, or Ollama's native ``models``).

        Bounded like a chat call: at most :data:`MAX_MODELS_BYTES`, ended at the
        deadline (the caller's ``--model-timeout``) or after a stall window of silence.
        """
        if deadline is None:
            deadline = time.monotonic() + (timeout_s if timeout_s is not None else 30.0)
        try:
            data = self._fetch("GET", "/models", None, deadline)
        except ModelError as exc:
            kind = exc.kind
            msg = exc.message if exc.message.startswith("GET /models") else f"GET /models: {exc.message}"
            raise ModelError(kind, self._scrub(msg)) from None
        try:
            parsed = loads(bytes(data))
        except ValueError:
            raise ModelError("http", "GET /models did not return JSON") from None
        self._listing = parsed  # the window ask reads it too: one GET /models per client
        items = (parsed.get("data") or parsed.get("models") or []) if isinstance(parsed, dict) else []
        ids = [m.get("id") or m.get("name") for m in (items if isinstance(items, list) else []) if isinstance(m, dict)]
        return [clean_text(i) for i in ids if isinstance(i, str) and i]

    def context_tokens(self, *, timeout_s: float = 10.0) -> int | None:
        """The model's context window in tokens, asked once from a local server's own API (None: unknown).

        Asks /v1/models (vLLM's ``max_model_len``); failing that, the one endpoint of
        the server it is (the preset, or ``owned_by`` in the listing): /props
        (llama.cpp), /api/v0/models/<id> (LM Studio), /api/show (Ollama). An
        unknown server is asked nothing more: endpoints it lacks would only 404 on
        every run. Remote providers are not asked: their windows dwarf kodr's prompts.
        """
        if self._window_asked:
            return self._window
        self._window_asked = True
        if not self.config.local:
            return None
        deadline = time.monotonic() + timeout_s
        asked = time.monotonic()
        try:
            model = self._model_name(deadline)
        except ModelError as exc:
            exc.duration_ms = exc.duration_ms or int((time.monotonic() - asked) * 1000)
            self._lookup_error = exc
            return None
        listing = self._listing
        if listing is None:
            try:
                listing = loads(self._fetch("GET", "/models", None, min(deadline, time.monotonic() + 5)))
            except (ModelError, ValueError):
                listing = None
        found = cw.from_models_list(listing, model)
        kind = self.config.name if self.config.name in cw.SERVER_ASKS else cw.server_kind(listing)
        if found is None and kind in cw.SERVER_ASKS:
            method, path, root, read = cw.SERVER_ASKS[kind]
            body = {"model": model} if method == "POST" else None
            try:
                found = read(
                    loads(
                        self._fetch(
                            method, path.format(model=model), body, min(deadline, time.monotonic() + 5), root=root
                        )
                    )
                )
            except (ModelError, ValueError):
                found = None
        if found:
            self._window = found
            log.info("model_context_window", provider=self.config.name, server=kind, tokens=found)
        return self._window

    def probe(self, *, timeout_s: float = 60.0, tools: bool = False) -> dict[str, Any]:
        """What a run would send and what the server made of it; see :func:`adapters.model_probe.probe`."""
        from adapters.model_probe import probe

        return probe(self, timeout_s=timeout_s, tools=tools)
