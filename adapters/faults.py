"""Deterministic crash injection, for the crash-matrix tests only.

``KODR_FAULT=after:N`` exits the process hard right after the append that commits
seq N; ``KODR_FAULT=before:N`` right before it. Exit code 137, like a SIGKILL: no
cleanup runs, no lease is released, children are left as orphans.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from kodr_core.events import Event, RecordedEvent
from kodr_core.ports import EventLog

ENV = "KODR_FAULT"


def parse(spec: str | None) -> tuple[str, int] | None:
    if not spec:
        return None
    when, _, n = spec.partition(":")
    if when not in ("after", "before") or not n.isdigit():
        raise ValueError(f"{ENV} must be after:N or before:N, not {spec!r}")
    return when, int(n)


class InjectedCrash(BaseException):
    """The in-process crash (``hard=False``): a BaseException, so no ``except Exception`` eats it."""


class FaultyLog:
    """The store with a crash at one seq; ``hard`` exits the process, else InjectedCrash is raised."""

    def __init__(self, inner: EventLog, when: str, seq: int, *, hard: bool = True) -> None:
        self.inner = inner
        self.when = when
        self.seq = seq
        self.hard = hard

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def append(self, run_id: str, expected_seq: int, events: Sequence[Event]) -> list[RecordedEvent]:
        hit = expected_seq < self.seq <= expected_seq + len(events)
        if hit and self.when == "before":
            self._die()
        recs = self.inner.append(run_id, expected_seq, events)
        if hit and self.when == "after":
            self._die()
        return recs

    def _die(self) -> None:
        if not self.hard:
            raise InjectedCrash(f"{self.when}:{self.seq}")
        sys.stderr.write(f"kodr: injected crash ({self.when}:{self.seq})\n")
        sys.stderr.flush()
        os._exit(137)


def wrap(log: EventLog, env: dict[str, str] | None = None) -> EventLog:
    spec = parse((env if env is not None else os.environ).get(ENV))
    return FaultyLog(log, *spec) if spec else log
