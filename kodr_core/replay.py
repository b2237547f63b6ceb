"""Replay's check: fold a history against today's machine, with no side effects.

The service layer and ``kodr replay`` both use it; it needs nothing but the events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kodr_core import events as ev
from kodr_core.aggregate import project, project_onto
from kodr_core.errors import KodrError


@dataclass
class ReplayReport:
    run_id: str
    events: int
    timeline: list[dict[str, Any]] = field(default_factory=list)
    illegal: list[dict[str, Any]] = field(default_factory=list)
    state: str | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return not self.illegal


def check(run_id: str, records: Iterable[ev.RecordedEvent]) -> ReplayReport:
    """Check without side effects; every transition must be legal in today's machine.

    ``records`` may be a stream (``EventStore.iter_events``): one pass that keeps only
    the run's projection (the same transition check as the fold) and the timeline, so
    a long history replays in bounded memory.
    """
    report = ReplayReport(run_id, 0)
    projection = project(run_id, ())
    expected = 1
    for rec in records:
        report.events += 1
        if rec.seq != expected:
            report.illegal.append({"seq": rec.seq, "error": f"seq gap: expected {expected}"})
        expected = rec.seq + 1
        e = rec.event
        if isinstance(e, ev.StateChanged):
            report.timeline.append(
                {
                    "seq": rec.seq,
                    "at": rec.recorded_at,
                    "from": e.from_state,
                    "to": e.to_state,
                    "trigger": e.trigger,
                    "reason": e.reason,
                }
            )
        try:
            projection = project_onto(projection, run_id, (rec,))
        except KodrError as exc:
            report.illegal.append({"seq": rec.seq, "type": rec.type, "error": exc.message})
            break
    report.state, report.reason = projection["state"], projection["reason"]
    return report
