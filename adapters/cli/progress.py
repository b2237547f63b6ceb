"""Following a run while it goes: one line per transition and per step start and end.

In a terminal, a step that takes time shows a live line (rich) with its elapsed
time; elsewhere (CI logs, pipes) it prints one plain line when it starts and one
when it ends, so a long install or model wait is never silent. Progress goes to
stdout, unless stdout carries data (``--json``, a ``--dry-run`` patch): then to
stderr. Logs (``--log-level``) are separate and always on stderr.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

import click

from kodr_core.results import InstallResult, TestResult

if TYPE_CHECKING:
    from kodr_core.events import RecordedEvent

_STARTS = {"InstallStarted": "installing", "TestsStarted": "running tests", "ModelCallStarted": "waiting for the model"}
_ENDS = {"InstallFinished", "TestsFinished", "ModelCallCompleted", "ModelCallFailed"}


class Progress:
    """An engine observer that prints what the run is doing to ``stream``."""

    def __init__(self, quiet: bool = False, stream: TextIO | None = None, live: bool | None = None) -> None:
        self.quiet = quiet
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self._bar: Any = None
        self._task: Any = None
        self._started = 0.0
        from adapters.cli.root import _level

        self._log = None
        if _level() is not None:
            import structlog

            self._log = structlog.get_logger("kodr")

    def say(self, line: str) -> None:
        if self._bar is not None:
            self._bar.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            click.echo(line, file=self.stream)

    def __call__(self, rec: RecordedEvent) -> None:
        if self._log is not None:
            import structlog

            structlog.contextvars.bind_contextvars(run_id=rec.run_id, seq=rec.seq)
            self._log.info("event", type=rec.type)
        if self.quiet:
            return
        e: Any = rec.event
        if rec.type in _STARTS:
            self._start(f"{_STARTS[rec.type]} (attempt {e.attempt})")
        elif rec.type in _ENDS:
            self._stop()
        if rec.type == "StateChanged":
            tail = f" [{e.reason}]" if e.reason else ""
            turn = f" (turn {e.heal_turn})" if e.to_state == "healing" else ""
            self.say(f"  {e.from_state} → {e.to_state}{turn} via {e.trigger}{tail}")
        elif rec.type == "TestsFinished":
            t = TestResult.of(e.result)
            self.say(
                f"    tests ({e.scope}): {t.passed} passed, {t.failed} failed, {t.skipped} skipped, "
                f"exit {t.exit_code}, {t.duration_ms} ms"
            )
        elif rec.type == "InstallFinished":
            i = InstallResult.of(e.result)
            how = f"could not run: {i.error}" if i.error else f"exit {i.exit_code}"
            self.say(f"    install: `{i.command}` {how}, {i.duration_ms} ms")
        elif rec.type == "ModelCallCompleted":
            self.say(f"    model replied in {e.duration_ms} ms")
        elif rec.type == "ModelCallFailed":
            self.say(f"    model call failed after {e.duration_ms} ms: {e.message}")
        elif rec.type == "ProposalRejected":
            self.say(f"    invalid model output: {e.error}")
        elif rec.type == "WritesRefused":
            self.say(f"    refused write {e.path!r}: {e.why}")

    def _start(self, what: str) -> None:
        self._stop()
        self._started = time.monotonic()
        if not self.live:
            click.echo(f"    {what}…", file=self.stream)
            return
        from rich.console import Console
        from rich.progress import Progress as Bar
        from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

        console = Console(file=self.stream, highlight=False, soft_wrap=True)
        self._bar = Bar(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True
        )
        self._bar.start()
        self._task = self._bar.add_task(what, total=None)

    def _stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def close(self) -> None:
        self._stop()
