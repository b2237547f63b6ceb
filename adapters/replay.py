"""``kodr replay``: check a history against today's machine, rebuild its workspace, re-run it.

Replay never calls a model: ``--rerun`` serves every model reply from the recording
and runs the real install and tests, then reports where today's run diverges.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kodr_core import events as ev
from kodr_core.aggregate import Run, fold
from kodr_core.errors import UsageError
from kodr_core.ports import ChatReply, ChatRequest, ModelError
from kodr_core.replay import ReplayReport, check  # noqa: F401 - re-exported: the CLI and tests use them here


def records_from_file(path: str | Path) -> tuple[str, list[ev.RecordedEvent]]:
    """Events as written by ``kodr events RUN --json``."""
    try:
        rows = json.loads(Path(path).read_text())
        recs = [
            ev.RecordedEvent(
                r["run_id"],
                int(r["seq"]),
                ev.decode(r["type"], int(r.get("schema_version", 1)), r["data"]),
                r.get("recorded_at", ""),
                r.get("prev_hash", ""),
                r.get("hash", ""),
            )
            for r in rows
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"cannot read a history from {str(path)!r}: {exc}") from exc
    if not recs:
        raise UsageError(f"{str(path)!r} holds no events")
    return recs[0].run_id, recs


def materialize(
    records: Sequence[ev.RecordedEvent], get_blob: Callable[[str], bytes], target: Path, at_seq: int | None = None
) -> dict[str, str]:
    """Write the workspace files as the history says they were at ``at_seq`` (default: the end)."""
    chosen = [r for r in records if at_seq is None or r.seq <= at_seq]
    if not chosen:
        raise UsageError(f"no event at or before seq {at_seq}")
    run = fold(chosen[0].run_id, chosen)
    target.mkdir(parents=True, exist_ok=True)
    for path, sha in sorted(run.manifest.items()):
        dest = target / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(get_blob(sha))
    return run.manifest


class RecordedModel:
    """Serves the recorded replies in the order they were received."""

    def __init__(self, replies: list[dict[str, Any]]) -> None:
        self._replies = list(replies)

    def complete(self, request: ChatRequest, *, deadline_s: float | None = None) -> ChatReply:
        if not self._replies:
            raise ModelError("unavailable", "the recording has no more model replies (the re-run diverged)")
        r = self._replies.pop(0)
        return ChatReply(
            content=r.get("content") or "",
            reasoning=r.get("reasoning"),
            finish_reason=r.get("finish_reason"),
            raw=r.get("response") or {},
            request_body=r.get("request") or {},
            duration_ms=0,
        )


def recorded_replies(records: Sequence[ev.RecordedEvent], get_blob: Callable[[str], bytes]) -> list[dict[str, Any]]:
    out = []
    for r in records:
        if isinstance(r.event, ev.ModelCallCompleted):
            out.append(json.loads(get_blob(r.event.response_blob)))
        elif isinstance(r.event, ev.ModelCallFailed):
            out.append({"content": "", "finish_reason": "error"})
    return out


def divergences(old: Run, new: Run) -> list[str]:
    """Where the re-run differs from the recording, turn by turn."""
    out = []
    for t_old in old.turns:
        t_new = new.turns[t_old.n] if t_old.n < len(new.turns) else None
        if t_new is None:
            out.append(f"turn {t_old.n}: recorded, but the re-run never reached it")
            continue
        a, b = t_old.final_tests, t_new.final_tests
        if (a is None) != (b is None):
            out.append(
                f"turn {t_old.n}: tests {'ran' if a else 'did not run'} in the recording, "
                f"{'ran' if b else 'did not run'} now"
            )
        elif a and b and (a.failed, a.passed) != (b.failed, b.passed):
            out.append(
                f"turn {t_old.n}: recorded {a.failed} failure(s) / {a.passed} passed, now {b.failed} / {b.passed}"
            )
        if t_old.install and t_new.install and t_old.install.ok != t_new.install.ok:
            out.append(f"turn {t_old.n}: install ok={t_old.install.ok} recorded, now {t_new.install.ok}")
    for t_new in new.turns[len(old.turns) :]:
        out.append(f"turn {t_new.n}: reached now, not in the recording")
    if (old.state, old.reason) != (new.state, new.reason):
        out.append(f"end: recorded {old.state.value} ({old.reason}), now {new.state.value} ({new.reason})")
    return out
