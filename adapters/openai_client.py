"""The one model adapter: OpenAI chat-completions over httpx, streamed, synchronous.

Deadlines are enforced, not hoped for. httpx fixes a request's read timeout when
the request starts, so a server that trickles bytes and then falls silent could
keep a call alive a whole stall window past its deadline. So each attempt's HTTP
I/O runs in a daemon thread that feeds a queue, and the caller waits on that
queue for at most min(stall window, time left): a call ends at its deadline, and
the abandoned thread ends at its next chunk or its own read timeout.

The API key is sent in the Authorization header only; it is scrubbed from
everything this module returns, raises or logs.
"""

from __future__ import annotations

import json
import queue
import random
import threading
import time
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog

from adapters.providers import ProviderConfig
from kodr_core.model_output import response_format_for
from kodr_core.ports import ChatReply, ChatRequest, ModelError

log = structlog.get_logger("kodr.model")

MAX_RESPONSE_BYTES = 32 * 1024 * 1024
_REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")
_PROBE_TOOL = {
    "type": "function",
    "function": {
        "name": "noop",
        "description": "Does nothing.",
        "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
    },
}
_PROBE_SCHEMA = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}},
    "required": ["ok"],
    "additionalProperties": False,
}


class _Retryable(Exception):
    """A failure worth another attempt: 408/429/5xx or a dropped connection."""

    def __init__(self, record: dict[str, Any], retry_after: float | None = None) -> None:
        super().__init__(record.get("message") or record.get("error"))
        self.record = record
        self.retry_after = retry_after

    @property
    def kind(self) -> str:
        return "http" if "status" in self.record else "unavailable"

    def describe(self) -> str:
        if "status" in self.record:
            return f"HTTP {self.record['status']}: {self.record.get('message', '')}"
        return str(self.record["error"])


class _BadStream(Exception):
    """The server answered 2xx but with something that is not a completion."""


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # content parts
        return "".join(p.get("text", "") for p in value if isinstance(p, dict))
    return ""


def _complete_json(text: str) -> bool:
    try:
        json.loads(text)
        return True
    except ValueError:
        return False


class _Assembler:
    """Builds one reply from SSE chunks, or from a plain JSON body when the server ignores ``stream``."""

    def __init__(self) -> None:
        self.mode: str | None = None  # sniffed from the first byte: servers mislabel content types
        self.buf = b""
        self.body = bytearray()
        self.data: list[str] = []
        self.streamed = False
        self.meta: dict[str, Any] = {}
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.slots: list[dict[str, Any]] = []
        self.by_index: dict[Any, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.message_extra: dict[str, Any] = {}

    def feed(self, chunk: bytes) -> None:
        if self.mode is None:
            head = (self.buf + chunk).lstrip()
            if not head:
                self.buf += chunk
                return
            self.mode = "json" if head[:1] in (b"{", b"[") else "sse"
            chunk, self.buf = self.buf + chunk, b""
        if self.mode == "json":
            self.body += chunk
            return
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            self._line(line.rstrip(b"\r").decode("utf-8", "replace"))

    def _line(self, line: str) -> None:
        if not line:
            if self.data:
                raise _BadStream(f"the server sent a stream event that is not JSON: {' '.join(self.data)[:200]!r}")
            return
        if line.startswith(":"):
            return
        field, _, value = line.partition(":")
        if field != "data":
            return
        self.data.append(value[1:] if value.startswith(" ") else value)
        joined = "\n".join(self.data)
        if joined.strip() == "[DONE]":
            self.data = []
            return
        try:
            event = json.loads(joined)
        except ValueError:
            return  # maybe continued on the next data: line
        self.data = []
        self.streamed = True
        self._event(event)

    def _event(self, event: Any) -> None:
        if not isinstance(event, dict):
            raise _BadStream(f"the server sent a stream event that is not an object: {str(event)[:200]!r}")
        if event.get("error") and not event.get("choices"):
            err = event["error"]
            raise _BadStream(f"the server reported an error: {_error_text(err)}")
        for key in ("id", "model", "created", "system_fingerprint"):
            if event.get(key) is not None and key not in self.meta:
                self.meta[key] = event[key]
        for choice in event.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice["delta"] if "delta" in choice else choice.get("message")
            if isinstance(delta, dict):
                self._delta(delta)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        if isinstance(event.get("usage"), dict):
            self.usage = event["usage"]

    def _delta(self, delta: dict[str, Any]) -> None:
        if delta.get("content"):
            self.content.append(_text(delta["content"]))
        for key in _REASONING_KEYS:
            if isinstance(delta.get(key), str) and delta[key]:
                self.reasoning.append(delta[key])
                break
        for call in delta.get("tool_calls") or []:  # [] and null both mean "none here"
            if isinstance(call, dict):
                self._tool_delta(call)

    def _tool_delta(self, call: dict[str, Any]) -> None:
        fn = call.get("function") if isinstance(call.get("function"), dict) else {}
        name, args, cid, index = fn.get("name"), fn.get("arguments"), call.get("id"), call.get("index")
        if isinstance(args, (dict, list)):  # Ollama and some servers send an object
            args = json.dumps(args, ensure_ascii=False)
        slot = self.by_index.get(index) if index is not None else (self.slots[-1] if self.slots else None)
        starts_new = slot is None or (
            (cid and slot["id"] and cid != slot["id"])  # whole calls reusing one index
            or (index is None and (cid or name))  # a whole call without an index
            or (name and slot["name"] and not cid and _complete_json(slot["arguments"]))
        )
        if starts_new:
            slot = {"id": None, "name": None, "arguments": ""}
            self.slots.append(slot)
            if index is not None:
                self.by_index[index] = slot
        assert slot is not None
        slot["id"] = slot["id"] or cid
        slot["name"] = slot["name"] or name
        if isinstance(args, str):
            slot["arguments"] += args

    def finish(self) -> tuple[dict[str, Any], bool]:
        """(raw response, streamed?)."""
        if self.mode == "json":
            try:
                raw = json.loads(bytes(self.body))
            except ValueError:
                raise _BadStream(f"the server sent a body that is not JSON: {bytes(self.body)[:200]!r}") from None
            if not isinstance(raw, dict) or not isinstance(raw.get("choices"), list):
                err = raw.get("error") if isinstance(raw, dict) else None
                raise _BadStream(
                    f"the server reported an error: {_error_text(err)}" if err else "the reply has no choices"
                )
            self._event(raw)
            return raw, False
        if self.buf.strip():
            self._line(self.buf.rstrip(b"\r").decode("utf-8", "replace"))
        self._line("")
        if not self.streamed:
            raise _BadStream("the server closed the stream without sending a completion")
        message: dict[str, Any] = {"role": "assistant", "content": self.text()}
        if self.reasoning:
            message["reasoning"] = "".join(self.reasoning)
        if self.slots:
            message["tool_calls"] = self.tool_calls()
        raw = {
            "id": self.meta.get("id"),
            "model": self.meta.get("model"),
            "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason}],
            "usage": self.usage,
        }
        return raw, True

    def text(self) -> str:
        return "".join(self.content)

    def tool_calls(self) -> list[dict[str, Any]]:
        return [
            {
                "id": s["id"] or f"call_{i}",
                "type": "function",
                "function": {"name": s["name"] or "", "arguments": s["arguments"] or "{}"},
            }
            for i, s in enumerate(self.slots)
            if s["name"] or s["arguments"]
        ]


def _error_text(err: Any) -> str:
    if isinstance(err, dict):
        msg = err.get("message") or json.dumps(err)
        raw = (err.get("metadata") or {}).get("raw") if isinstance(err.get("metadata"), dict) else None
        return f"{msg} ({str(raw)[:300]})" if raw else str(msg)
    return str(err)


def _error_message(data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip()
    try:
        obj = json.loads(text)
    except ValueError:
        return text[:500] or "(empty body)"
    if isinstance(obj, dict):
        if obj.get("error"):
            return _error_text(obj["error"])[:500]
        return str(obj.get("message") or obj.get("detail") or text)[:500]
    return text[:500]


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
        except (TypeError, ValueError):
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
        retry_after_cap_s: float = 60.0,
        stream: bool = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = config
        self.connect_timeout = connect_timeout
        self.stall_timeout_s = stall_timeout_s
        self.deadline_s = deadline_s
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.retry_after_cap_s = retry_after_cap_s
        self.stream = stream
        host = urlsplit(config.base_url).hostname or ""
        # Proxy variables must not hijack a server on this machine.
        self._http = httpx.Client(
            transport=transport, trust_env=host not in ("localhost", "127.0.0.1", "::1"), follow_redirects=False
        )
        self._model: str | None = config.model

    def __repr__(self) -> str:
        return f"OpenAIChatClient({self.config!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OpenAIChatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the port --------------------------------------------------------------

    def request_body_for(self, request: ChatRequest, *, timeout_s: float | None = None) -> dict[str, Any]:
        """The exact JSON body :meth:`complete` sends, for recording before the call."""
        body: dict[str, Any] = {"model": self._model_name(timeout_s), "messages": list(request.messages)}
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.tools:
            body["tools"] = list(request.tools)
        fmt = response_format_for(self.config.local, bool(request.tools), request.response_schema)
        if fmt is not None:
            body["response_format"] = fmt
        if self.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def complete(self, request: ChatRequest, *, deadline_s: float | None = None) -> ChatReply:
        budget = self.deadline_s if deadline_s is None else deadline_s
        started = time.monotonic()
        deadline = started + budget
        try:
            body = self.request_body_for(request, timeout_s=budget)
        except ModelError as exc:
            exc.duration_ms = int((time.monotonic() - started) * 1000)
            raise
        return self._call(body, started, deadline, budget, self.max_retries)

    # -- one call, with retries -----------------------------------------------

    def _call(
        self, body: dict[str, Any], started: float, deadline: float, budget: float, max_retries: int
    ) -> ChatReply:
        retries: list[dict[str, Any]] = []
        attempt = 0

        def failed(kind: str, message: str) -> ModelError:
            ms = int((time.monotonic() - started) * 1000)
            return ModelError(kind, self._scrub(message), duration_ms=ms, retries=retries)

        while True:
            attempt += 1
            try:
                raw, asm, streamed = self._attempt(body, deadline, budget)
            except _Retryable as r:
                if attempt > max_retries:
                    suffix = f" (gave up after {attempt} attempts)" if attempt > 1 else ""
                    raise failed(r.kind, r.describe() + suffix) from None
                wait = self._backoff(attempt, r.retry_after)
                if time.monotonic() + wait >= deadline:
                    why = f"{r.describe()}; no time left before the {budget:g}s deadline to retry"
                    raise failed(r.kind, why) from None
                record = {"attempt": attempt, **r.record, "wait_ms": int(wait * 1000)}
                record = {k: (self._scrub(v) if isinstance(v, str) else v) for k, v in record.items()}
                retries.append(record)
                log.warning("model_retry", provider=self.config.name, **record)
                time.sleep(wait)
                continue
            except ModelError as exc:
                raise failed(exc.kind, exc.message) from None
            return ChatReply(
                content=self._scrub(asm.text()),
                reasoning=self._scrub("".join(asm.reasoning)) if asm.reasoning else None,
                tool_calls=self._redact(asm.tool_calls()),
                finish_reason=asm.finish_reason,
                usage=asm.usage,
                raw=self._redact({**raw, "stream": streamed} if streamed else raw),
                request_body=self._redact(body),
                duration_ms=int((time.monotonic() - started) * 1000),
                retries=retries,
            )

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.retry_after_cap_s)
        base = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        return base * (0.5 + random.random() / 2)

    def _attempt(
        self, body: dict[str, Any], deadline: float, budget: float
    ) -> tuple[dict[str, Any], _Assembler, bool]:
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
        worker = threading.Thread(
            target=self._worker, args=(body, timeout, inbox, cancel), daemon=True, name="kodr-model-call"
        )
        worker.start()
        asm: _Assembler | None = None
        received = 0
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
                    raise ModelError(
                        "timeout", f"the server sent nothing for {self.stall_timeout_s:g}s (stall timeout)"
                    ) from None
                kind = item[0]
                if kind == "head":
                    asm = _Assembler()
                elif kind == "bytes":
                    assert asm is not None
                    received += len(item[1])
                    if received > MAX_RESPONSE_BYTES:
                        raise ModelError("http", f"the response passed {MAX_RESPONSE_BYTES} bytes; gave up")
                    asm.feed(item[1])
                elif kind == "end":
                    assert asm is not None
                    raw, streamed = asm.finish()
                    return raw, asm, streamed
                elif kind == "status":
                    self._raise_for_status(item[1], item[2], item[3])
                else:
                    self._raise_for_exception(item[1], deadline, budget)
        except _BadStream as exc:
            raise ModelError("http", str(exc)) from None
        finally:
            cancel.set()

    def _worker(
        self,
        body: dict[str, Any],
        timeout: httpx.Timeout,
        inbox: queue.SimpleQueue[tuple[Any, ...]],
        cancel: threading.Event,
    ) -> None:
        try:
            url = self._url("/chat/completions")
            with self._http.stream("POST", url, json=body, headers=self._headers(), timeout=timeout) as resp:
                if not resp.is_success:
                    data = b""
                    for chunk in resp.iter_bytes():
                        data += chunk
                        if len(data) > 65536 or cancel.is_set():
                            break
                    inbox.put(("status", resp.status_code, dict(resp.headers), data))
                    return
                inbox.put(("head", resp.headers.get("content-type", "")))
                for chunk in resp.iter_bytes():
                    if cancel.is_set():
                        return
                    inbox.put(("bytes", chunk))
            inbox.put(("end",))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            inbox.put(("exc", exc))

    def _raise_for_status(self, status: int, headers: dict[str, str], data: bytes) -> None:
        message = _error_message(data)
        if status in (408, 429) or status >= 500:
            raise _Retryable({"status": status, "message": message[:200]}, _retry_after(headers))
        raise ModelError("http", f"HTTP {status}: {message}")

    def _raise_for_exception(self, exc: BaseException, deadline: float, budget: float) -> None:
        if isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout)):
            if time.monotonic() >= deadline:
                raise ModelError("timeout", f"the model call passed its {budget:g}s deadline and was cancelled")
            raise ModelError("timeout", f"the server sent nothing for {self.stall_timeout_s:g}s (stall timeout)")
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
            raise _Retryable({"error": f"cannot connect to {self.config.base_url}: {exc}"})
        if isinstance(exc, (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)):
            raise _Retryable({"error": f"connection dropped: {type(exc).__name__}: {exc}"})
        if isinstance(exc, httpx.HTTPError):
            raise ModelError("unavailable", f"{type(exc).__name__}: {exc}")
        raise exc

    # -- helpers ---------------------------------------------------------------

    def _url(self, path: str) -> str:
        return self.config.base_url.rstrip("/") + path

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

    def _model_name(self, timeout_s: float | None) -> str:
        if self._model is None:
            models = self.list_models(timeout_s=timeout_s)
            if not models:
                where = f"{self.config.base_url}/models"
                raise ModelError("unavailable", f"no model given and {where} lists none; pass --model")
            self._model = models[0]
        return self._model

    # -- discovery ---------------------------------------------------------------

    def list_models(self, *, timeout_s: float | None = None) -> list[str]:
        """Model ids from GET /models (OpenAI shape, or Ollama's native ``models``)."""
        wait = min(timeout_s or 30.0, 30.0)
        try:
            resp = self._http.get(
                self._url("/models"),
                headers=self._headers(),
                timeout=httpx.Timeout(wait, connect=min(self.connect_timeout, wait)),
            )
        except httpx.TimeoutException as exc:
            raise ModelError("timeout", f"GET /models timed out: {type(exc).__name__}") from None
        except httpx.HTTPError as exc:
            raise ModelError("unavailable", self._scrub(f"cannot reach {self.config.base_url}: {exc}")) from None
        if not resp.is_success:
            why = f"GET /models: HTTP {resp.status_code}: {_error_message(resp.content)}"
            raise ModelError("http", self._scrub(why))
        try:
            data = resp.json()
        except ValueError:
            raise ModelError("http", "GET /models did not return JSON") from None
        items = (data.get("data") or data.get("models") or []) if isinstance(data, dict) else []
        ids = [m.get("id") or m.get("name") for m in items if isinstance(m, dict)]
        return [i for i in ids if isinstance(i, str)]

    def probe(self, *, timeout_s: float = 60.0) -> dict[str, Any]:
        """What the server accepts: tools, json_schema, both (None = could not tell).

        Local servers often reject ``tools`` together with ``response_format``;
        this is how a user finds out before a run does.
        """
        result: dict[str, Any] = {
            "provider": self.config.name,
            "base_url": self.config.base_url,
            "reachable": False,
            "models": [],
            "model": None,
            "protocol": "unknown",
            "streaming": None,
            "tools": None,
            "json_schema": None,
            "both": None,
            "errors": {},
        }
        try:
            result["models"] = self.list_models(timeout_s=timeout_s)
            result["reachable"] = True
        except ModelError as exc:
            result["errors"]["models"] = exc.message
            if exc.kind != "http":
                return result
            result["reachable"] = True  # it answered, just not /models
        model = self.config.model or (result["models"][0] if result["models"] else None)
        if model is None:
            result["errors"]["model"] = "no model given and the server lists none"
            return result
        result["model"] = model
        base = {
            "model": model,
            "messages": [{"role": "user", "content": 'Reply with the JSON {"ok": true}.'}],
            "temperature": 0,
            "max_tokens": 16,
        }
        fmt = {"type": "json_schema", "json_schema": {"name": "probe", "strict": True, "schema": _PROBE_SCHEMA}}
        checks = {
            "protocol": {**base, **({"stream": True} if self.stream else {})},
            "tools": {**base, "tools": [_PROBE_TOOL]},
            "json_schema": {**base, "response_format": fmt},
            "both": {**base, "tools": [_PROBE_TOOL], "response_format": fmt},
        }
        for name, body in checks.items():
            started = time.monotonic()
            try:
                reply = self._call(body, started, started + timeout_s, timeout_s, 0)
            except ModelError as exc:
                result["errors"][name] = exc.message
                ok = False if exc.kind == "http" else None
            else:
                ok = True
                if name == "protocol":
                    result["streaming"] = bool(reply.raw.get("stream"))
            if name == "protocol":
                if not ok:  # no plain chat, so the feature checks would mean nothing
                    return result
                result["protocol"] = "openai-chat-completions"
            else:
                result[name] = ok
        return result
