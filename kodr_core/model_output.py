"""Digging the envelope (and text tool calls) out of what models actually send.

Pure. Local models wrap their JSON in ``<think>`` blocks, Markdown fences and
prose, leave it in the reasoning field, or write a tool call as text instead of
using the protocol. This module finds the envelope anyway and, when it cannot,
says precisely why, in words meant to be quoted back to the model.

Decisions:

* A reply cut off at the token limit (``finish_reason == "length"``) is never
  trusted, even if some JSON in it happens to validate.
* When several JSON objects validate, the last one wins: models revise.
* Raw newlines inside JSON strings are accepted (``strict=False``); so are
  trailing commas, but only as a fallback when nothing parses without them.
* Only a leading think block (or a lone leading ``</think>``) is removed; think
  tags anywhere else are content. An unclosed leading ``<think>`` is no answer.
* Reasoning text is only searched when the visible content is empty, so a draft
  the model thought about and rejected is not mistaken for its answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

from kodr_core.envelope import (
    ENVELOPE_EXAMPLE,
    SCHEMA_NAME,
    InvalidProposal,
    Proposal,
    parse_proposal,
)
from kodr_core.ports import ChatReply

_JSON = json.JSONDecoder(strict=False)
#: A file name's limit on every common filesystem (NAME_MAX), in bytes.
MAX_NAME_BYTES = 255

_LEADING_THINK = re.compile(r"\s*<(think|thinking)>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</(?:think|thinking)>", re.IGNORECASE)
_THINK_OPEN = re.compile(r"<(?:think|thinking)>", re.IGNORECASE)
_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n(.*?)\n?\s*```\s*$", re.DOTALL)
_TOOL_CALL_TAG = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|\Z)", re.DOTALL)
_FUNCTION_TAG = re.compile(r"<function=([^>\s]+)>(.*?)(?:</function>|\Z)", re.DOTALL)
_PARAMETER_TAG = re.compile(r"<parameter=([^>\s]+)>(.*?)(?:</parameter>|(?=<parameter=)|\Z)", re.DOTALL)
_MISTRAL_TAG = "[TOOL_CALLS]"

CUT_OFF = (
    "the reply was cut off at the token limit (finish_reason=length) before the envelope "
    "was complete; answer again with a shorter reply: no commentary, only the files that must change"
)
UNCLOSED_THINK = (
    "the reply opened a <think> block and never closed it, so it holds no answer yet; "
    "finish thinking, close it with </think>, then answer with the envelope"
)
_HINT = f" Answer with exactly one JSON object of the form {ENVELOPE_EXAMPLE}."


def _raw_decode(text: str, i: int = 0) -> tuple[Any, int]:
    """raw_decode that reports JSON nested past Python's recursion limit as a decode error."""
    try:
        return _JSON.raw_decode(text, i)
    except RecursionError:
        raise json.JSONDecodeError("JSON nested too deep", text, i) from None


def _decode(text: str) -> Any:
    text = text.strip()
    value, end = _raw_decode(text, 0)
    if text[end:].strip():
        raise json.JSONDecodeError("Extra data", text, end)
    return value


def writable(proposal: Proposal) -> Proposal:
    """The proposal, if every path and content can be stored and written; else InvalidProposal.

    The envelope's own checks count characters; a file system counts bytes, and
    JSON escapes can smuggle lone surrogates that no encoder accepts.
    """
    for f in proposal.files:
        shown = ascii(f.path)[:80]
        try:
            f.path.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidProposal(f"refused path {shown}: not valid Unicode (a lone surrogate)") from None
        for part in f.path.split("/"):
            if len(part.encode("utf-8")) > MAX_NAME_BYTES:
                raise InvalidProposal(f"refused path {shown}: a name is longer than {MAX_NAME_BYTES} bytes")
        try:
            f.content.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidProposal(f"the content of {shown} is not valid Unicode (a lone surrogate)") from None
    for text in (proposal.summary, getattr(proposal, "notes", None)):
        if isinstance(text, str):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidProposal("the summary or notes are not valid Unicode (a lone surrogate)") from None
    return proposal


def response_format_for(local: bool, has_tools: bool, schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ``response_format`` to send, or None.

    Local servers (LM Studio, Ollama, llama.cpp, vLLM) break when ``tools`` and
    ``response_format`` arrive together, so local tool-calling turns send no schema
    and the envelope is parsed from text; everyone else gets strict json_schema.
    """
    if schema is None or (local and has_tools):
        return None
    return {"type": "json_schema", "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": schema}}


def split_thinking(text: str) -> tuple[str, bool]:
    """(the visible answer, whether the reply is still inside an unclosed leading think block).

    Only a *leading* ``<think>…</think>`` block is removed, or everything up to a
    lone ``</think>`` (templates that put the opening tag in the prompt) when the
    reply does not start as JSON: think tags later in the reply are content (a
    file may hold them) and are kept byte for byte. A reply that opens a think
    block and never closes it has no answer yet.
    """
    opened = _LEADING_THINK.match(text)
    if opened:
        close = re.compile(rf"</{opened.group(1)}>", re.IGNORECASE).search(text, opened.end())
        return ("", True) if close is None else (text[close.end() :], False)
    close = _THINK_CLOSE.search(text)
    if (
        close is not None
        and not text.lstrip().startswith(("{", "[", "```"))
        and _THINK_OPEN.search(text, 0, close.start()) is None
    ):
        return text[close.end() :], False
    return text, False


def strip_thinking(text: str) -> str:
    """The reply without its leading think block (see :func:`split_thinking`); "" while unclosed."""
    return split_thinking(text)[0]


def _whole_json(text: str) -> Any:
    """The reply parsed as one JSON value (optionally in a single fence), else None."""
    fenced = _FENCE.match(text)
    body = (fenced.group(1) if fenced else text).strip()
    if not body.startswith("{"):
        return None
    try:
        return _decode(body)
    except json.JSONDecodeError:
        return None


def _scan_objects(text: str) -> tuple[list[dict[str, Any]], json.JSONDecodeError | None]:
    """Every outermost JSON object in ``text``, and the parse error that got furthest."""
    found: list[dict[str, Any]] = []
    best: tuple[int, json.JSONDecodeError] | None = None
    i = text.find("{")
    while i != -1:
        try:
            obj, end = _raw_decode(text, i)
        except json.JSONDecodeError as exc:
            if exc.msg == "JSON nested too deep":  # every inner "{" would be as deep: stop here
                best = (len(text), exc)
                break
            if best is None or exc.pos - i > best[0]:
                best = (exc.pos - i, exc)
            i = text.find("{", i + 1)
            continue
        if isinstance(obj, dict):
            found.append(obj)
        i = text.find("{", end)
    # A failure that parsed only a few characters was prose, not an attempt at JSON.
    return found, (best[1] if best and best[0] >= 10 else None)


def _load_args(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return _decode(value)
        except json.JSONDecodeError:
            return value
    return value


def _candidates(obj: Any, depth: int = 0) -> Iterator[dict[str, Any]]:
    """The envelope itself, or one unwrapped from a tool call / single-key wrapper."""
    if not isinstance(obj, dict) or depth > 3:
        return
    if "files" in obj or "summary" in obj:
        yield obj
        return
    inner = obj["function"] if isinstance(obj.get("function"), dict) else obj
    for key in ("arguments", "parameters", "args", "input"):
        if key in inner:
            yield from _candidates(_load_args(inner[key]), depth + 1)
    if isinstance(obj.get("tool_calls"), list):
        for call in obj["tool_calls"]:
            yield from _candidates(call, depth + 1)
    if len(obj) == 1:
        yield from _candidates(next(iter(obj.values())), depth + 1)


def _drop_trailing_commas(text: str) -> str:
    """Remove commas directly before ``}`` or ``]`` outside JSON strings."""
    out: list[str] = []
    in_str = escaped = False
    n = len(text)
    for i, c in enumerate(text):
        if in_str:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c == ",":
            j = i + 1
            while j < n and text[j] in " \t\r\n":
                j += 1
            if j < n and text[j] in "}]":
                continue
        out.append(c)
    return "".join(out)


class _Search:
    """Tries sources in order; remembers the most useful reason for failure."""

    def __init__(self) -> None:
        self.invalid: str | None = None
        self.parse_error: json.JSONDecodeError | None = None
        self.other_keys: list[str] | None = None

    def try_value(self, value: Any) -> Proposal | None:
        for cand in _candidates(value):
            try:
                return writable(parse_proposal(cand))
            except InvalidProposal as exc:
                self.invalid = self.invalid or exc.message
        if isinstance(value, dict) and self.other_keys is None:
            self.other_keys = sorted(value)[:10]
        return None

    def try_text(self, text: str) -> Proposal | None:
        objects, error = _scan_objects(text)
        if error is not None and self.parse_error is None:
            self.parse_error = error
        for obj in reversed(objects):
            found = self.try_value(obj)
            if found is not None:
                return found
        return None

    def failure(self, empty: bool) -> InvalidProposal:
        if self.invalid:
            return InvalidProposal(self.invalid + "." + _HINT)
        if self.parse_error is not None:
            e = self.parse_error
            return InvalidProposal(
                f"the reply contains JSON that does not parse: {e.msg} at line {e.lineno} column {e.colno}." + _HINT
            )
        if self.other_keys is not None:
            return InvalidProposal(
                f"the reply contains JSON, but not the envelope: found keys {self.other_keys}, "
                "expected summary, files, notes." + _HINT
            )
        return InvalidProposal(("the reply was empty." if empty else "no JSON object found in the reply.") + _HINT)


def extract_envelope(
    reply_content: str | None, reasoning: str | None = None, *, finish_reason: str | None = None
) -> Proposal:
    """The envelope in a model's reply, or InvalidProposal saying what was wrong."""
    if finish_reason == "length":
        raise InvalidProposal(CUT_OFF)
    content = reply_content or ""
    search = _Search()
    # The well-behaved case (response_format honoured): the whole reply is the JSON.
    whole = _whole_json(content)
    if whole is not None and (found := search.try_value(whole)) is not None:
        return found
    visible, unclosed = split_thinking(content)
    if unclosed:
        raise InvalidProposal(UNCLOSED_THINK)
    sources = [visible] if visible.strip() else [content, reasoning or ""]
    for repair in (False, True):
        for text in sources:
            candidate = _drop_trailing_commas(text) if repair else text
            if repair and candidate == text:
                continue
            if (found := search.try_text(candidate)) is not None:
                return found
    raise search.failure(empty=not (content.strip() or (reasoning or "").strip()))


def envelope_from_reply(reply: ChatReply) -> Proposal:
    """The envelope from a reply: a protocol tool call carrying it (e.g. ``submit``), else the text."""
    if reply.finish_reason == "length":
        raise InvalidProposal(CUT_OFF)
    search = _Search()
    for call in reply.tool_calls:
        if (found := search.try_value(call)) is not None:
            return found
    return extract_envelope(reply.content, reply.reasoning, finish_reason=reply.finish_reason)


# -- tool calls written as text ------------------------------------------------


def _call(name: Any, args: Any) -> dict[str, Any] | None:
    if not isinstance(name, str) or not name:
        return None
    args = _load_args(args if args is not None else {})
    arguments = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


def _calls_from_value(value: Any, *, tagged: bool) -> list[dict[str, Any]]:
    """Calls in a decoded value; untagged text must show both a name and its arguments."""
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if not isinstance(item, dict):
            continue
        fn = item["function"] if isinstance(item.get("function"), dict) else item
        keys = [k for k in ("arguments", "parameters", "args") if k in fn]
        if not keys and not tagged:
            continue
        call = _call(fn.get("name"), fn[keys[0]] if keys else None)
        if call:
            out.append(call)
    return out


def _calls_from_xml(body: str) -> list[dict[str, Any]]:
    """Qwen3-Coder style: ``<function=NAME><parameter=KEY>VALUE</parameter></function>``."""
    out = []
    for m in _FUNCTION_TAG.finditer(body):
        params = {k: v.strip("\n") for k, v in _PARAMETER_TAG.findall(m.group(2))}
        call = _call(m.group(1), params)
        if call:
            out.append(call)
    return out


def _calls_from_json_text(text: str, *, tagged: bool) -> list[dict[str, Any]]:
    value = _whole_json(text)
    if value is None:
        stripped = text.strip()
        try:
            value = _decode(stripped) if stripped.startswith("[") else None
        except json.JSONDecodeError:
            value = None
    if value is None:
        objects, _ = _scan_objects(text)
        value = objects
    return _calls_from_value(value, tagged=tagged)


def _mistral_calls(text: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    start = text.find(_MISTRAL_TAG)
    while start != -1:
        rest = text[start + len(_MISTRAL_TAG) :].lstrip()
        if "[ARGS]" in rest.split("\n", 1)[0]:  # [TOOL_CALLS]name[ARGS]{...}
            name, _, tail = rest.partition("[ARGS]")
            try:
                args, _ = _raw_decode(tail.lstrip())
            except json.JSONDecodeError:
                args = None
            call = _call(name.strip(), args)
            out += [call] if call else []
        else:
            try:
                value, _ = _raw_decode(rest)
                out += _calls_from_value(value, tagged=True)
            except json.JSONDecodeError:
                pass
        start = text.find(_MISTRAL_TAG, start + 1)
    return out


def parse_text_tool_calls(content: str | None, names: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Tool calls a model wrote as text, in OpenAI shape (``arguments`` is a JSON string).

    Understands ``<tool_call>{json}</tool_call>`` (Hermes/Qwen), ``<function=…>``
    XML (Qwen3-Coder), ``[TOOL_CALLS]`` (Mistral) and bare or fenced
    ``{"name": …, "arguments": …}`` objects. Text inside ``<think>`` is ignored.
    Pass ``names`` to accept only the tools that were offered.
    """
    text = strip_thinking(content or "")
    calls: list[dict[str, Any]] = []
    for body in _TOOL_CALL_TAG.findall(text):
        calls += _calls_from_xml(body) if "<function=" in body else _calls_from_json_text(body, tagged=True)
    if not calls:
        calls = _calls_from_xml(text) or _mistral_calls(text) or _calls_from_json_text(text, tagged=False)
    allowed = set(names) if names is not None else None
    calls = [c for c in calls if allowed is None or c["function"]["name"] in allowed]
    for i, call in enumerate(calls):
        call["id"] = f"text_call_{i}"
    return [{"id": c["id"], "type": c["type"], "function": c["function"]} for c in calls]
