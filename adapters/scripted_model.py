"""A model that answers from a script: the demo's model, and replay's recorded model.

It implements the same port as the HTTP client, so the engine cannot tell them apart.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from kodr_core.ports import ChatReply, ChatRequest, ModelError


class ScriptedModel:
    def __init__(self, replies: Iterable[str | dict[str, Any]]) -> None:
        self._replies = [r if isinstance(r, str) else json.dumps(r) for r in replies]
        self.requests: list[ChatRequest] = []

    def complete(self, request: ChatRequest, *, deadline_s: float | None = None) -> ChatReply:
        self.requests.append(request)
        if not self._replies:
            raise ModelError("unavailable", "the scripted model has no more replies")
        content = self._replies.pop(0)
        raw = {
            "choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "model": "kodr-scripted",
        }
        return ChatReply(
            content=content,
            finish_reason="stop",
            raw=raw,
            request_body={"model": "kodr-scripted", "messages": request.messages},
            duration_ms=1,
        )
