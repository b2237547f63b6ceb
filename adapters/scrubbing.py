"""The secret scrubber at the store and model boundaries (see :mod:`kodr_core.secrets`).

:class:`ScrubbingLog` scrubs every blob and every event before the store sees it;
:class:`ScrubbingModel` scrubs every prompt before it is sent. Process output is
scrubbed by the process runner itself. Both wrappers pass every other attribute
through, so they can sit on top of a fenced log or an HTTP client.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

from kodr_core import events as ev
from kodr_core.ports import ChatReply, ChatRequest, EventLog, ModelPort
from kodr_core.secrets import Scrubber


def scrub_value(scrubber: Scrubber, value: Any) -> Any:
    """Every string inside a JSON-like value, scrubbed; the shape stays."""
    if isinstance(value, str):
        return scrubber.text(value)
    if isinstance(value, list):
        return [scrub_value(scrubber, v) for v in value]
    if isinstance(value, dict):
        return {k: scrub_value(scrubber, v) for k, v in value.items()}
    return value


class ScrubbingLog:
    def __init__(self, inner: EventLog, scrubber: Scrubber) -> None:
        self._inner = inner
        self._scrubber = scrubber

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def put_blob(self, data: bytes) -> str:
        return self._inner.put_blob(self._scrubber.bytes(data))

    def put_blobs(self, items: Sequence[bytes]) -> list[str]:
        return self._inner.put_blobs([self._scrubber.bytes(d) for d in items])

    def append(self, run_id: str, expected_seq: int, events: Sequence[ev.Event]) -> list[ev.RecordedEvent]:
        if self._scrubber:
            events = [type(e).model_validate(scrub_value(self._scrubber, e.model_dump(mode="json"))) for e in events]
        return self._inner.append(run_id, expected_seq, events)

    def load(self, run_id: str) -> list[ev.RecordedEvent]:
        return self._inner.load(run_id)

    def get_blob(self, sha256: str) -> bytes:
        return self._inner.get_blob(sha256)


class ScrubbingModel:
    def __init__(self, inner: ModelPort, scrubber: Scrubber) -> None:
        self._inner = inner
        self._scrubber = scrubber

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def complete(self, request: ChatRequest, *, deadline_s: float | None = None) -> ChatReply:
        if self._scrubber:
            request = replace(request, messages=scrub_value(self._scrubber, request.messages))
        return self._inner.complete(request, deadline_s=deadline_s)
