"""How many tokens a local model server's context holds, and its way of saying a prompt did not fit.

Each server tells its window somewhere else: llama.cpp's ``GET /props``
(``n_ctx``), LM Studio's ``GET /api/v0/models/<id>`` (``loaded_context_length``),
Ollama's ``POST /api/show`` (``num_ctx`` in ``parameters``; without it Ollama
runs a 4096-token default and truncates silently), vLLM's ``GET /v1/models``
(``max_model_len``). And each refuses an overlong prompt in its own words; those
are recognised here, with the numbers when the message carries them, so the
caller can shrink the prompt and try once more. An overflow is never a refusal
of a parameter: it changes nothing kodr believes the server supports.
"""

from __future__ import annotations

import re
from typing import Any

from kodr_core.ports import ModelError

#: What Ollama runs when the model file sets no num_ctx.
OLLAMA_DEFAULT_CTX = 4096

_OVERFLOW = [
    # llama.cpp: {"error": {"type": "exceed_context_size_error", "n_prompt_tokens": N, "n_ctx": M}}
    re.compile(
        r"exceed_context_size_error|exceeds the available context size|context size has been exceeded", re.IGNORECASE
    ),
    # vLLM / OpenAI: "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens"
    re.compile(r"maximum context length|context_length_exceeded|context length exceeded", re.IGNORECASE),
    # LM Studio: "... the model is loaded with context length of only 4096 tokens"
    re.compile(
        r"context length of only|tokens to keep from the initial prompt is greater than the context", re.IGNORECASE
    ),
    # generic wording (TGI, llama-cpp-python, proxies)
    re.compile(r"prompt is too long|too many tokens|input is too long|context window", re.IGNORECASE),
]
_NUMBERS = [
    re.compile(
        r"maximum context length is (?P<window>\d+) tokens.*?requested (?P<prompt>\d+) tokens",
        re.DOTALL | re.IGNORECASE,
    ),
    re.compile(r"context length of only (?P<window>\d+)", re.IGNORECASE),
    re.compile(
        r"request \((?P<prompt>\d+) tokens\) exceeds the available context size \((?P<window>\d+) tokens", re.IGNORECASE
    ),
    re.compile(r"maximum context length is (?P<window>\d+) tokens", re.IGNORECASE),
    re.compile(r"prompt contains at least (?P<prompt>\d+) input tokens", re.IGNORECASE),
    re.compile(r"n_prompt_tokens\D{1,5}(?P<prompt>\d+).*?n_ctx\D{1,5}(?P<window>\d+)", re.DOTALL | re.IGNORECASE),
    re.compile(r"n_ctx\D{1,5}(?P<window>\d+).*?n_prompt_tokens\D{1,5}(?P<prompt>\d+)", re.DOTALL | re.IGNORECASE),
]


class ContextOverflow(ModelError):
    """The server refused the prompt as longer than its context; ``window``/``prompt`` in tokens when told."""

    def __init__(self, message: str, window: int | None = None, prompt: int | None = None, **kw: Any) -> None:
        super().__init__("context_overflow", message, **kw)
        self.window = window
        self.prompt = prompt


def overflow_in(status: int, message: str, body_text: str) -> ContextOverflow | None:
    """The overflow an error response reports, or None."""
    if status not in (400, 413, 422, 500):
        return None
    text = f"{message}\n{body_text[:4000]}"
    if not any(p.search(text) for p in _OVERFLOW):
        return None
    window = prompt = None
    for pattern in _NUMBERS:
        m = pattern.search(text)
        if m:
            got = m.groupdict()
            window = window or (int(got["window"]) if got.get("window") else None)
            prompt = prompt or (int(got["prompt"]) if got.get("prompt") else None)
    numbers = (
        f" (prompt {prompt} tokens, context {window})"
        if prompt and window
        else f" (context {window} tokens)"
        if window
        else ""
    )
    return ContextOverflow(
        f"the prompt does not fit the model's context{numbers}: HTTP {status}: {message}", window, prompt
    )


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and 0 < value < 10**8:
        return value
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) < 9:
        return int(value.strip())
    return None


def from_models_list(data: Any, model: str) -> int | None:
    """vLLM's ``max_model_len`` (or LM Studio / OpenRouter's context fields) for ``model`` in /v1/models."""
    items = data.get("data") if isinstance(data, dict) else None
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and item.get("id") == model:
            for key in ("max_model_len", "loaded_context_length", "context_length", "max_context_length"):
                if (n := _int(item.get(key))) is not None:
                    return n
    return None


def from_props(data: Any) -> int | None:
    """llama.cpp's ``/props``: ``default_generation_settings.n_ctx`` (or a top-level ``n_ctx``)."""
    if not isinstance(data, dict):
        return None
    settings = data.get("default_generation_settings")
    if isinstance(settings, dict) and (n := _int(settings.get("n_ctx"))) is not None:
        return n
    return _int(data.get("n_ctx"))


def from_lmstudio(data: Any) -> int | None:
    """LM Studio's ``/api/v0/models/<id>``: the loaded context, else the model's maximum."""
    if not isinstance(data, dict):
        return None
    return _int(data.get("loaded_context_length")) or _int(data.get("max_context_length"))


def from_ollama_show(data: Any) -> int | None:
    """Ollama's ``/api/show``: ``num_ctx`` from the parameters, else Ollama's default."""
    if not isinstance(data, dict) or not (isinstance(data.get("model_info"), dict) or "parameters" in data):
        return None
    params = data.get("parameters")
    if isinstance(params, str):
        m = re.search(r"^\s*num_ctx\s+(\d+)", params, re.MULTILINE)
        if m:
            return _int(m.group(1))
    return OLLAMA_DEFAULT_CTX


#: Where each server kind tells its window: (method, path beside /v1, relative to the root?, reader).
SERVER_ASKS: dict[str, tuple[str, str, bool, Any]] = {
    "llamacpp": ("GET", "/props", True, from_props),
    "lmstudio": ("GET", "/api/v0/models/{model}", True, from_lmstudio),
    "ollama": ("POST", "/api/show", True, from_ollama_show),
}

#: ``owned_by`` values in /v1/models, per server kind.
_OWNERS = {
    "llamacpp": "llamacpp",
    "organization_owner": "lmstudio",
    "library": "ollama",
    "ollama": "ollama",
    "vllm": "vllm",
}


def server_kind(listing: Any) -> str | None:
    """Which server a /v1/models listing comes from, by its ``owned_by`` (None: unknown)."""
    items = listing.get("data") if isinstance(listing, dict) else None
    for item in items if isinstance(items, list) else []:
        owner = item.get("owned_by") if isinstance(item, dict) else None
        if isinstance(owner, str) and owner.lower() in _OWNERS:
            return _OWNERS[owner.lower()]
    return None
