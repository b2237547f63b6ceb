"""What a model server accepts, asked before a run finds out the hard way (``kodr probe``)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from kodr_core.ports import ModelError

if TYPE_CHECKING:
    from adapters.openai_client import OpenAIChatClient

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


def probe(client: OpenAIChatClient, *, timeout_s: float = 60.0) -> dict[str, Any]:
    """What the server accepts: tools, json_schema, both (None = could not tell).

    Local servers often reject ``tools`` together with ``response_format``;
    this is how a user finds out before a run does.
    """
    result: dict[str, Any] = {
        "provider": client.config.name,
        "base_url": client.config.base_url,
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
        result["models"] = client.list_models(timeout_s=timeout_s)
        result["reachable"] = True
    except ModelError as exc:
        result["errors"]["models"] = exc.message
        if exc.kind != "http":
            return result
        result["reachable"] = True  # it answered, just not /models
    model = client.config.model or (result["models"][0] if result["models"] else None)
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
        "protocol": {**base, **({"stream": True} if client.stream else {})},
        "tools": {**base, "tools": [_PROBE_TOOL]},
        "json_schema": {**base, "response_format": fmt},
        "both": {**base, "tools": [_PROBE_TOOL], "response_format": fmt},
    }
    for name, body in checks.items():
        started = time.monotonic()
        try:
            reply = client._call(body, started, started + timeout_s, timeout_s, 0)
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
