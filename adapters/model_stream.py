"""One reply from the bytes a server sends: SSE chunks, or a plain JSON body.

Every byte here is hostile. What the caller can rely on:

* Nothing in this module raises anything but :class:`BadStream` on bad input:
  JSON nested past Python's recursion limit, wrong types in any field (a
  ``finish_reason`` of ``7``, a content part ``{"text": 5}``, a tool call
  ``"index": [0]``), lone surrogates, events that are not objects.
* What it returns is clean: every string is valid UTF-8 (lone surrogates become
  U+FFFD), every structure kept from the wire is at most :data:`MAX_DEPTH` deep,
  at most :data:`MAX_TOOL_CALLS` tool calls are assembled.
* A stream is finished only when a choice carried a string ``finish_reason``;
  :attr:`StreamAssembler.finished` says so, and the client treats an
  unfinished stream as a dropped connection (retried, never executed).
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 16
MAX_TOOL_CALLS = 64
REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class BadStream(Exception):
    """The server answered 2xx with something that is not a completion."""


def clean_text(text: str) -> str:
    """``text`` with lone surrogates replaced, so it can be encoded and stored."""
    return _SURROGATE.sub("\ufffd", text)


def clean(value: Any, depth: int = 0) -> Any:
    """A JSON value as kodr keeps it: surrogate-free strings, at most MAX_DEPTH levels deep."""
    if isinstance(value, str):
        return clean_text(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if depth >= MAX_DEPTH:
        return "(nested too deep; dropped)"
    if isinstance(value, dict):
        return {clean_text(str(k)): clean(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v, depth + 1) for v in value]
    return clean_text(str(value))


def loads(text: str | bytes) -> Any:
    """json.loads that says ValueError for everything a hostile body can do to it."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deep") from None


def text_of(value: Any) -> str:
    """Content as text: a string, or the string ``text`` of content parts; anything else is no text."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(p["text"] for p in value if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _complete_json(text: str) -> bool:
    try:
        loads(text)
        return True
    except ValueError:
        return False


def error_text(err: Any) -> str:
    """A server's ``error`` member as one line of text, whatever its shape."""
    if isinstance(err, dict):
        msg = err.get("message") or json.dumps(clean(err))[:500]
        meta = err.get("metadata")
        raw = meta.get("raw") if isinstance(meta, dict) else None
        return clean_text(f"{msg} ({str(raw)[:300]})" if raw else str(msg))
    return clean_text(str(err))


class StreamAssembler:
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
        self.by_index: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.problems: list[str] = []  # wrong-typed fields that were ignored, for the record

    @property
    def finished(self) -> bool:
        """The server said the answer is complete (a JSON body is complete by construction)."""
        return self.mode == "json" or self.finish_reason is not None

    def _problem(self, what: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(clean_text(what[:200]))

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
                raise BadStream(f"the server sent a stream event that is not JSON: {' '.join(self.data)[:200]!r}")
            return
        if line.startswith(":"):
            return
        field, _, value = line.partition(":")
        if field != "data":
            return
        self.data.append(value.removeprefix(" "))
        joined = "\n".join(self.data)
        if joined.strip() == "[DONE]":
            self.data = []
            return
        try:
            event = loads(joined)
        except ValueError:
            return  # maybe continued on the next data: line
        self.data = []
        self.streamed = True
        self._event(event)

    def _event(self, event: Any) -> None:
        if not isinstance(event, dict):
            raise BadStream(f"the server sent a stream event that is not an object: {clean_text(str(event)[:200])!r}")
        if event.get("error") and not event.get("choices"):
            raise BadStream(f"the server reported an error: {error_text(event['error'])}")
        for key in ("id", "model", "created", "system_fingerprint"):
            value = event.get(key)
            if isinstance(value, (str, int, float)) and not isinstance(value, bool) and key not in self.meta:
                self.meta[key] = clean(value)
        choices = event.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            if not isinstance(choice, dict) or choice.get("index", 0) not in (0, None):
                continue
            delta = choice["delta"] if "delta" in choice else choice.get("message")
            if isinstance(delta, dict):
                self._delta(delta)
            finish = choice.get("finish_reason")
            if isinstance(finish, str) and finish:
                self.finish_reason = clean_text(finish[:64])
            elif finish is not None and finish != "":
                self._problem(f"finish_reason is not a string: {json.dumps(clean(finish))[:80]}")
        if isinstance(event.get("usage"), dict):
            self.usage = clean(event["usage"], MAX_DEPTH - 3)

    def _delta(self, delta: dict[str, Any]) -> None:
        content = delta.get("content")
        if content:
            text = text_of(content)
            if not text and not isinstance(content, str):
                self._problem(f"content is neither text nor text parts: {json.dumps(clean(content))[:80]}")
            self.content.append(clean_text(text))
        for key in REASONING_KEYS:
            if isinstance(delta.get(key), str) and delta[key]:
                self.reasoning.append(clean_text(delta[key]))
                break
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else []:  # [] and null both mean "none here"
            if isinstance(call, dict):
                self._tool_delta(call)

    def _tool_delta(self, call: dict[str, Any]) -> None:
        fn: dict[str, Any] = call["function"] if isinstance(call.get("function"), dict) else {}
        name, args, cid, index = fn.get("name"), fn.get("arguments"), call.get("id"), call.get("index")
        name = clean_text(name) if isinstance(name, str) and name else None
        cid = clean_text(cid) if isinstance(cid, str) and cid else None
        if index is not None and (isinstance(index, bool) or not isinstance(index, int)):
            self._problem(f"tool call index is not an integer: {json.dumps(clean(index))[:80]}")
            index = None
        if isinstance(args, (dict, list)):  # Ollama and some servers send an object
            args = json.dumps(clean(args), ensure_ascii=False)
        slot = self.by_index.get(index) if index is not None else (self.slots[-1] if self.slots else None)
        starts_new = slot is None or bool(
            (cid and slot["id"] and cid != slot["id"])  # whole calls reusing one index
            or (index is None and (cid or name))  # a whole call without an index
            or (name and slot["name"] and not cid and _complete_json(slot["arguments"]))
        )
        if starts_new:
            if len(self.slots) >= MAX_TOOL_CALLS:
                self._problem(f"more than {MAX_TOOL_CALLS} tool calls; the rest were dropped")
                return
            slot = {"id": None, "name": None, "arguments": ""}
            self.slots.append(slot)
            if index is not None:
                self.by_index[index] = slot
        assert slot is not None
        slot["id"] = slot["id"] or cid
        slot["name"] = slot["name"] or name
        if isinstance(args, str):
            slot["arguments"] += clean_text(args)

    def finish(self) -> tuple[dict[str, Any], bool]:
        """(raw response, streamed?)."""
        if self.mode == "json":
            try:
                raw = loads(bytes(self.body))
            except ValueError:
                raise BadStream(f"the server sent a body that is not JSON: {bytes(self.body)[:200]!r}") from None
            if not isinstance(raw, dict) or not isinstance(raw.get("choices"), list):
                err = raw.get("error") if isinstance(raw, dict) else None
                raise BadStream(
                    f"the server reported an error: {error_text(err)}" if err else "the reply has no choices"
                )
            self._event(raw)
            return clean(raw), False
        if self.buf.strip():
            self._line(self.buf.rstrip(b"\r").decode("utf-8", "replace"))
        self._line("")
        if not self.streamed:
            raise BadStream("the server closed the stream without sending a completion")
        message: dict[str, Any] = {"role": "assistant", "content": self.text()}
        if self.reasoning:
            message["reasoning"] = "".join(self.reasoning)
        if self.slots:
            message["tool_calls"] = self.tool_calls()
        assembled: dict[str, Any] = {
            "id": self.meta.get("id"),
            "model": self.meta.get("model"),
            "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason}],
            "usage": self.usage,
        }
        if self.problems:
            assembled["protocol_problems"] = list(self.problems)
        return assembled, True

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
