"""A finished run in one line: its end, the one detail that matters, and the next command.

The line itself is the core's (:func:`kodr_core.explain.one_line`); this module adds
the model server's address from the provider presets, and the "next command" hint,
which depends on how the user invoked kodr.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kodr_core.aggregate import Run


def _model_url(run: Run) -> str:
    from adapters.providers import PRESETS

    opts = run.options
    preset = PRESETS.get(str(opts.get("provider")))
    return str(opts.get("base_url") or (preset.base_url if preset else "") or "")


def detail(run: Run) -> str:
    """The one fact that explains the run's end (the core's), with the model server's address."""
    from kodr_core.explain import outcome_detail

    return outcome_detail(run, _model_url(run))


def invoked_as() -> str:
    """How to type kodr so that it works as printed: ``kodr`` when that is on PATH, else the path used."""
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "kodr":
        on_path = shutil.which("kodr")
        if on_path and os.path.realpath(on_path) == os.path.realpath(argv0):
            return "kodr"
        return shlex.quote(os.path.abspath(argv0))
    if argv0.endswith("__main__.py"):  # python -m adapters.cli
        return f"{shlex.quote(sys.executable)} -m adapters.cli"
    return "kodr"


def kodr_command(*args: str, workspace: str | None = None) -> str:
    """A kodr command line to print as a hint; ``-w`` only when the workspace is not the current directory."""
    here = os.path.realpath(os.getcwd())
    ws = [] if workspace is None or os.path.realpath(workspace) == here else ["-w", workspace]
    return invoked_as() + " " + " ".join(shlex.quote(a) for a in [*args, *ws])


_kodr = kodr_command


def next_command(run: Run, workspace: str | None) -> str:
    """What to type next: probe an unreachable server, resume an unfinished run, else explain."""
    reason = run.reason or ""
    if reason in ("model_unavailable", "model_timeout"):
        provider = str(run.options.get("provider") or "")
        url = run.options.get("base_url")
        args = ["probe", "--base-url", str(url)] if url else ["probe", "--provider", provider]
        return _kodr(*args, workspace=None)
    if run.outcome is None:
        return _kodr("resume", run.run_id, workspace=workspace)
    if reason == "dry_run":
        return _kodr("show", run.run_id, workspace=workspace)
    return _kodr("explain", run.run_id, workspace=workspace)


def one_line(run: Run) -> str:
    """``run <id>: failed (install_failed: `npm install …` could not run: executable not found: 'npm')``."""
    from kodr_core.explain import one_line as outcome

    return f"run {run.run_id}: {outcome(run, _model_url(run))}"
