"""A ModelPort that lets the model look at the workspace before it answers.

Wraps the HTTP client: each step sends the read-only tools, runs the calls the
model makes (protocol ``tool_calls`` or calls written as text) and sends the
results back, until the model answers without a tool call or the step budget is
spent; the last step asks for the envelope with no tools and with the strict
``response_format`` again. The engine sees one reply: the final one, with the
tool trace in ``raw`` and the whole transcript in ``request_body``.

Decisions:

* Local tool turns carry no ``response_format`` (local servers break on the
  pair); remote ones keep it. The final no-tools turn always carries it.
* The final turn flattens tool messages into plain text, because some servers
  and templates refuse ``tool`` messages in a request without ``tools``.
* Calls written as text get their results back as a user message: the model did
  not use the protocol, so its template may not render ``tool`` messages.
* The caller's deadline covers the whole loop: each step gets the time left,
  and when less than the slowest step so far remains, the next step is the final one.
* A tool turn that ends in prose (no call, no valid envelope) is followed by one
  more turn without tools and with the schema (the client sends the best
  structured-output mode the server accepts); the prose stays in the transcript.
* A server that refuses the first tool turn with a 400/422 naming ``tools`` or
  ``response_format`` (:class:`ParameterRefused`) is asked again without the
  part it refused, and that is remembered for later calls. Nothing else is a
  refusal: a 503 after retries, a cut stream or an overflowing context is the
  error it is, and the time and attempts it cost stay in the record.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

from adapters.openai_client import ParameterRefused
from adapters.symbols import symbols_of
from adapters.workspace import DiskWorkspace
from kodr_core.envelope import InvalidProposal
from kodr_core.model_output import (
    envelope_from_reply,
    parse_text_tool_calls,
    strip_thinking,
)
from kodr_core.ports import ChatReply, ChatRequest, ModelError, ModelPort
from kodr_core.tools import TOOL_HINT, TOOL_NAMES, TOOL_SCHEMAS, ToolCache

MAX_CALLS_PER_STEP = 8
MAX_RESULT_BYTES = 32 * 1024
FINAL_PROMPT = (
    "The tool budget is used up. Do not call any tools. Answer now with the JSON envelope only, "
    "using what you have read."
)
PROSE_PROMPT = (
    "That was not the JSON envelope. Do not call any tools. Answer now with the JSON envelope only, "
    "using what you have read."
)
TEXT_RESULTS_TAIL = "Call more tools the same way if you must, or answer with the JSON envelope only."


def _sum_usage(total: dict[str, Any] | None, usage: dict[str, Any] | None) -> dict[str, Any] | None:
    if not usage:
        return total
    out = dict(total or {})
    for key, value in usage.items():
        if isinstance(value, bool) or value is None:
            out.setdefault(key, value)
        elif isinstance(value, (int, float)):
            prev = out.get(key)
            out[key] = (prev if isinstance(prev, (int, float)) else 0) + value
        elif isinstance(value, dict):
            prev = out.get(key)
            out[key] = _sum_usage(prev if isinstance(prev, dict) else None, value)
        else:
            out.setdefault(key, value)
    return out


def _with_hint(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The caller's messages with the tool hint added to the first system message (or one put first)."""
    out = [dict(m) for m in messages]
    for m in out:
        if m.get("role") == "system" and isinstance(m.get("content"), str):
            m["content"] = f"{m['content']}\n\n{TOOL_HINT}"
            return out
    return [{"role": "system", "content": TOOL_HINT}, *out]


def _flatten(messages: list[dict[str, Any]], keep: int) -> list[dict[str, Any]]:
    """The loop's messages (after the caller's first ``keep``) as plain assistant/user text.

    Consecutive user texts of the loop's own are merged, so roles keep alternating
    for chat templates that insist on it.
    """
    out: list[dict[str, Any]] = [dict(m) for m in messages[:keep]]
    mine = len(out)  # messages from here on are the loop's own and may be merged
    names: dict[Any, str] = {}  # ids of the latest assistant's calls (servers reuse call_0 every step)

    def user(text: str) -> None:
        if len(out) > mine and out[-1]["role"] == "user":
            out[-1] = {"role": "user", "content": f"{out[-1]['content']}\n\n{text}"}
        else:
            out.append({"role": "user", "content": text})

    for m in messages[keep:]:
        if m.get("role") == "assistant" and m.get("tool_calls"):
            names = {c.get("id"): c["function"]["name"] for c in m["tool_calls"]}
            calls = "\n".join(
                f"{c['function']['name']} {c['function'].get('arguments') or '{}'}" for c in m["tool_calls"]
            )
            text = (m.get("content") or "").strip()
            out.append({"role": "assistant", "content": (text + "\n" if text else "") + f"[tool calls]\n{calls}"})
        elif m.get("role") == "tool":
            user(f"[result of {names.get(m.get('tool_call_id')) or 'tool'}]\n{m.get('content', '')}")
        elif m.get("role") == "user" and isinstance(m.get("content"), str):
            user(m["content"])
        else:
            out.append(m)
    return out


class ToolLoopModel:
    """ModelPort: the inner client plus read-only tool calls, bounded by steps and the deadline."""

    def __init__(
        self,
        inner: ModelPort,
        workspace: DiskWorkspace,
        *,
        max_steps: int = 6,
        local: bool,
        default_deadline_s: float = 600.0,
    ) -> None:
        self.inner = inner
        self.workspace = workspace
        self.max_steps = max(1, max_steps)
        self.local = local
        self.default_deadline_s = getattr(inner, "deadline_s", default_deadline_s)
        self.format_with_tools = not local  # flipped off when the server refuses the pair
        self.tools_refused = False  # set when the server refuses tools at all

    def context_tokens(self, *, timeout_s: float = 10.0) -> int | None:
        """The inner client's context window (None: unknown)."""
        ask = getattr(self.inner, "context_tokens", None)
        return ask(timeout_s=timeout_s) if callable(ask) else None

    def result_cap_bytes(self) -> int:
        """How much of one tool result is sent back: a sixth of the window, so a few results fit."""
        window = self.context_tokens()
        return MAX_RESULT_BYTES if not window else max(1500, min(MAX_RESULT_BYTES, window * 3 // 6))

    def complete(self, request: ChatRequest, *, deadline_s: float | None = None) -> ChatReply:
        return _Loop(self, request, self.default_deadline_s if deadline_s is None else deadline_s).run()


class _Loop:
    """One ``complete`` call: its messages, trace, cache and running totals."""

    def __init__(self, owner: ToolLoopModel, request: ChatRequest, budget: float) -> None:
        self.owner = owner
        self.request = request
        self.budget = budget
        self.started = time.monotonic()
        self.deadline = self.started + budget
        self.caller_tools = list(request.tools or [])
        self.caller_names = {t.get("function", {}).get("name") for t in self.caller_tools}
        self.messages = _with_hint(request.messages)
        self.keep = len(self.messages)  # the caller's messages; the loop appends after them
        self.trace: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.cache = ToolCache()
        self.usage: dict[str, Any] | None = None
        self.duration_ms = 0
        self.retries: list[dict[str, Any]] = []
        self.slowest_s = 0.0
        self._files_cache: list[str] | None = None
        self._last: ChatReply | None = None

    # -- the loop ----------------------------------------------------------------

    def run(self) -> ChatReply:
        if self.owner.tools_refused:
            return self._finish(self._call(self._final_request()), steps=1)
        for step in range(1, self.owner.max_steps + 1):
            left = self.deadline - time.monotonic()
            final = step == self.owner.max_steps or (step > 1 and left < 1.5 * self.slowest_s)
            if final:
                if step < self.owner.max_steps:
                    self.notes.append(f"step {step}: little time left, asked for the envelope")
                return self._finish(self._call(self._final_request()), steps=step)
            reply = self._tool_step(step)
            if reply is None:  # the server refused tools: the answer came from a no-tools turn
                assert self._last is not None
                return self._finish(self._last, steps=step)
            calls, source = self._calls_in(reply)
            if not calls:
                if reply.finish_reason == "length" or self._has_envelope(reply) or self._is_callers(reply):
                    return self._finish(reply, steps=step)
                self.notes.append(f"step {step}: the reply was prose, not the envelope; asked once more without tools")
                return self._finish(self._call(self._final_request(prose=reply)), steps=step + 1)
            self._run_calls(step, reply, calls, source)
        raise AssertionError("unreachable")  # pragma: no cover

    def _tool_step(self, step: int) -> ChatReply | None:
        tools = TOOL_SCHEMAS + self.caller_tools
        schema = self.request.response_schema if self.owner.format_with_tools else None
        req = ChatRequest(
            messages=list(self.messages), response_schema=schema, tools=tools, temperature=self.request.temperature
        )
        try:
            return self._call(req)
        except ParameterRefused as exc:
            # Only the first step's request is the caller's plus tools, so only there does a
            # refusal say "no tools here"; later it would mean the server changed its mind.
            if step != 1 or exc.parameter != "tools":
                raise
            if schema is not None:  # maybe only the pair is refused: try tools alone
                self.owner.format_with_tools = False
                self.notes.append(f"server refused tools with response_format ({exc.message[:200]}); sent tools alone")
                return self._tool_step(step)
            self.owner.tools_refused = True
            self.notes.append(f"server refused tools ({exc.message[:200]}); answered without tools")
            self._last = self._call(self._final_request())
            return None

    def _is_callers(self, reply: ChatReply) -> bool:
        return bool(reply.tool_calls) and bool({c["function"]["name"] for c in reply.tool_calls} & self.caller_names)

    def _final_request(self, prose: ChatReply | None = None) -> ChatRequest:
        if prose is not None:
            said = strip_thinking(prose.content or "").strip() or "(no answer)"
            tail = [{"role": "assistant", "content": said}, {"role": "user", "content": PROSE_PROMPT}]
            messages = _flatten(self.messages + tail, self.keep)
        elif self.trace:
            messages = _flatten(self.messages + [{"role": "user", "content": FINAL_PROMPT}], self.keep)
        else:  # no tool was ever offered or used: the caller's request as it was
            messages = list(self.request.messages)
        return ChatRequest(
            messages=messages,
            response_schema=self.request.response_schema,
            tools=self.caller_tools or None,
            temperature=self.request.temperature,
        )

    def _call(self, req: ChatRequest) -> ChatReply:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise ModelError(
                "timeout",
                f"the model call passed its {self.budget:g}s deadline",
                duration_ms=self.duration_ms,
                retries=self.retries,
            )
        t0 = time.monotonic()
        try:
            reply = self.owner.inner.complete(req, deadline_s=left)
        except ModelError as exc:
            spent = exc.duration_ms or int((time.monotonic() - t0) * 1000)
            self.duration_ms += spent
            self.retries = self.retries + exc.retries  # a caught refusal still cost this time
            exc.duration_ms = self.duration_ms
            exc.retries = list(self.retries)
            exc.capabilities = self._capabilities(exc.capabilities)
            if exc.kind == "timeout":  # the inner call saw only the time left; report the user's budget
                exc.message = f"the model call passed its {self.budget:g}s deadline (during the tool loop)"
                exc.args = (exc.message,)
            raise
        self.slowest_s = max(self.slowest_s, time.monotonic() - t0)
        self.duration_ms += reply.duration_ms
        self.usage = _sum_usage(self.usage, reply.usage)
        self.retries += reply.retries
        return reply

    # -- tool calls ----------------------------------------------------------------

    def _calls_in(self, reply: ChatReply) -> tuple[list[dict[str, Any]], str]:
        """The calls to run, and whether they came by protocol or as text; none means "final answer"."""
        if reply.finish_reason == "length":
            return [], ""
        if reply.tool_calls:
            names = {c["function"]["name"] for c in reply.tool_calls}
            if names & self.caller_names:
                return [], ""  # a tool the caller offered (e.g. a submit tool) is the caller's business
            if not names & TOOL_NAMES and self._has_envelope(reply):
                return [], ""
            return reply.tool_calls, "protocol"
        if self._has_envelope(reply):
            return [], ""
        return parse_text_tool_calls(reply.content, TOOL_NAMES), "text"

    @staticmethod
    def _has_envelope(reply: ChatReply) -> bool:
        try:
            envelope_from_reply(reply)
            return True
        except InvalidProposal:
            return False

    def _files(self) -> list[str]:
        """The listing, once per ``complete``: the workspace does not change while the model thinks."""
        if self._files_cache is None:
            self._files_cache = self.owner.workspace.files()
        return self._files_cache

    def _run_calls(self, step: int, reply: ChatReply, calls: list[dict[str, Any]], source: str) -> None:
        results: list[tuple[dict[str, Any], str]] = []
        for i, call in enumerate(calls):
            name = call["function"]["name"]
            args = call["function"].get("arguments") or "{}"
            args = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
            if i >= MAX_CALLS_PER_STEP:
                result, cached = f"error: at most {MAX_CALLS_PER_STEP} tool calls run per step; call it again", False
            else:
                result, cached = self.cache.call(
                    name, args, step=step, files=self._files, read=self.owner.workspace.read, symbols=symbols_of
                )
            cap = self.owner.result_cap_bytes()
            if len(result.encode()) > cap:
                result = result.encode()[:cap].decode("utf-8", "ignore") + (
                    f"\n[cut at {cap} bytes to fit the model's context; ask for a smaller range]"
                )
            results.append((call, result))
            self.trace.append(
                {
                    "step": step,
                    "name": name,
                    "arguments": args[:2000],
                    "cached": cached,
                    "result_bytes": len(result.encode()),
                    "source": source,
                }
            )
        content = strip_thinking(reply.content or "").strip()
        if source == "protocol":
            self.messages.append({"role": "assistant", "content": content, "tool_calls": calls})
            for call, result in results:
                self.messages.append({"role": "tool", "tool_call_id": call["id"], "content": result})
        else:
            self.messages.append({"role": "assistant", "content": content})
            parts = [
                f"[result of {c['function']['name']} {c['function'].get('arguments') or '{}'}]\n{r}" for c, r in results
            ]
            self.messages.append({"role": "user", "content": "\n\n".join(parts + [TEXT_RESULTS_TAIL])})

    # -- the answer ------------------------------------------------------------------

    def _capabilities(self, inner: dict[str, Any]) -> dict[str, Any]:
        tools = (
            "refused"
            if self.owner.tools_refused
            else "offered with response_format"
            if self.owner.format_with_tools
            else "offered without response_format"
        )
        return {**inner, "tools": tools}

    def _finish(self, reply: ChatReply, *, steps: int) -> ChatReply:
        raw = {**reply.raw, "tool_trace": self.trace, "tool_steps": steps}
        if self.notes:
            raw["tool_notes"] = self.notes
        return replace(
            reply,
            raw=raw,
            usage=self.usage,
            duration_ms=self.duration_ms,
            retries=self.retries,
            capabilities=self._capabilities(reply.capabilities),
        )
