"""The run's deadline, shared by every step: each model call, install and test gets at most the time left.

Pure. ``--deadline S`` bounds the whole run from its ``RunRequested`` event, so
a step never starts with more time than the run has; a step's own timeout still
applies when it is shorter. A step that was given less than its own timeout
says so (``cut``), and its record carries the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from kodr_core.aggregate import Run
from kodr_core.options import RunOptions

#: A step is never given less than this, so it can fail with its own clear message.
MIN_STEP_S = 0.5


@dataclass(frozen=True)
class StepTime:
    """The time one step may take, and whether the run's deadline shortened it."""

    timeout_s: float
    cut: bool
    own_timeout_s: float
    left_s: float | None

    def facts(self) -> dict[str, float | bool | None]:
        """What goes in the step's record when the deadline cut it."""
        return {
            "cut_by_run_deadline": self.cut,
            "own_timeout_s": self.own_timeout_s,
            "given_s": round(self.timeout_s, 3),
            "run_time_left_s": None if self.left_s is None else round(self.left_s, 3),
        }


def time_left(run: Run, now: float) -> float | None:
    """Seconds left before the run's deadline (None: no deadline, or the run has no start yet)."""
    deadline = RunOptions.of(run.options).run_deadline_s
    if deadline is None or not run.created_at:
        return None
    start = datetime.fromisoformat(run.created_at.replace("Z", "+00:00")).timestamp()
    return deadline - (now - start)


def step_time(run: Run, now: float, own_timeout_s: float) -> StepTime:
    """``own_timeout_s``, or the run's time left when that is shorter."""
    left = time_left(run, now)
    if left is None or left >= own_timeout_s:
        return StepTime(own_timeout_s, False, own_timeout_s, left)
    return StepTime(max(MIN_STEP_S, left), True, own_timeout_s, left)
