"""A finished run in one line: its end, the one detail that matters, and the next command.

Rendered from the terminal transition's reason and facts (and the last turn's
install result, whose error says why a command could not start). When the core
grows its own one-line renderer this module delegates to it and keeps only the
"next command" hint, which depends on how the user invoked kodr.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kodr_core.aggregate import Run

_MAX = 200


def _get(obj: Any, *keys: str) -> Any:
    """A field of a result that may be a dict (camelCase) or a typed model (snake_case)."""
    for key in keys:
        if isinstance(obj, dict) and obj.get(key) is not None:
            return obj[key]
        if obj is not None and not isinstance(obj, dict) and getattr(obj, key, None) is not None:
            return getattr(obj, key)
    return None


def _first_line(text: Any) -> str:
    for line in str(text or "").splitlines():
        if line.strip():
            return _clip(line.strip())
    return ""


def _clip(text: str, limit: int = _MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _command(result: Any) -> str:
    cmd = _get(result, "command", "argv")
    return " ".join(cmd) if isinstance(cmd, list) else str(cmd or "?")


def _install_detail(run: Run, facts: dict[str, Any]) -> str:
    result = next((t.install for t in reversed(run.turns) if t.install is not None), None) or facts
    error = _get(result, "error")
    code = _get(result, "exitCode", "exit_code")
    head = f"`{_command(result)}`"
    if error:
        return f"{head} could not run: {_first_line(error)}"
    tail = _first_line(_get(result, "stderrTail", "stderr_tail") or _get(result, "stdoutTail", "stdout_tail"))
    return f"{head} exit {code}" + (f": {tail}" if tail else "")


def _tests_detail(facts: dict[str, Any]) -> str:
    failing = [str(n) for n in facts.get("failing") or [] if n]
    counts = f"{facts.get('failed')} of {facts.get('total')} failed" if facts.get("total") is not None else ""
    names = ", ".join(failing[:3]) + (f" (+{len(failing) - 3} more)" if len(failing) > 3 else "")
    return "; ".join(p for p in (f"`{facts.get('command')}`" if facts.get("command") else "", counts, names) if p)


def _model_url(run: Run) -> str:
    from adapters.providers import PRESETS

    opts = run.options
    preset = PRESETS.get(str(opts.get("provider")))
    return str(opts.get("base_url") or (preset.base_url if preset else "") or "")


def detail(run: Run) -> str:
    """The one fact that explains the run's end, or '' when the reason says it all."""
    facts: dict[str, Any] = dict(run.transitions[-1].facts) if run.transitions else {}
    reason = run.reason or ""
    if reason in ("model_unavailable", "model_timeout"):
        message = _first_line(facts.get("message"))
        url = _model_url(run)
        return message if (not url or url in message) else f"{message} ({url})"
    if reason in ("install_failed", "install_timeout"):
        return _install_detail(run, facts)
    if reason == "install_refused":
        refused = facts.get("refused")
        items = [str(x) for x in refused] if isinstance(refused, list) else [str(refused or "")]
        return _clip("; ".join(_first_line(x) for x in items if x)) or _install_detail(run, facts)
    if reason == "test_command_refused":
        return _clip(str(facts.get("why") or ""), 600)
    if reason == "no_verification":
        return "; ".join(p for p in (str(facts.get("why") or ""), f"`{facts.get('command')}` exit {facts.get('exitCode')}")
                         if p)
    if reason in ("tests_failed", "budget_exhausted", "tests_removed"):
        return _tests_detail(facts)
    if reason == "verification_passed":
        return f"{facts.get('passed')} tests passed (`{facts.get('command')}`)"
    if reason == "invalid_proposal":
        errors = facts.get("errors") or []
        return _first_line(errors[-1]) if errors else ""
    if reason == "unsafe_write":
        refused = facts.get("refused") or []
        return _first_line(refused[0]) if refused else ""
    for key in ("message", "why", "error"):
        if facts.get(key):
            return _first_line(facts[key])
    return ""


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
    """``run <id>: failed (install_failed: `npm install …` could not run: executable not found: 'npm' …)``."""
    why = run.reason or ""
    more = detail(run)
    inner = f"{why}: {more}" if why and more else (why or more)
    return f"run {run.run_id}: {run.state.value}" + (f" ({inner})" if inner else "")
