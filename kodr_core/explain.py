"""``kodr explain``: why a run ended where it did, derived from its events alone.

:func:`one_line` is the run's outcome in one line with the cause a user needs
(``failed (no_verification: pytest not installed in the project environment)``).
"""

from __future__ import annotations

from typing import Any

from kodr_core.aggregate import Run, Turn
from kodr_core.brakes import best_turn, failure_count, history_from_run
from kodr_core.results import TestResult


def _final(t: Turn | None) -> TestResult | None:
    return t.final_tests if t else None


def _failing(t: Turn | None) -> list[str] | None:
    """Names of the failing tests, or None when the turn's result tells nothing."""
    res = _final(t)
    if res is None or failure_count(res) is None:
        return None
    return [f.name or f.file or "?" for f in res.failures]


def _install(t: Turn, install_requested: bool) -> str:
    if t.install is not None:
        r = t.install
        return f"ran `{r.command}`: exit {r.exit_code} in {r.duration_ms} ms"
    if t.install_skipped:
        return f"skipped: {t.install_skipped}"
    return "not requested" if not install_requested else "not run"


def explain(run: Run) -> dict[str, Any]:
    install_requested = bool(run.options.get("install"))
    turns = []
    for t in run.turns:
        before = _failing(run.turns[t.n - 1]) if t.n > 0 else None
        after = _failing(t)
        res = _final(t)
        turns.append(
            {
                "turn": t.n,
                "kind": ("adopted" if run.mode == "heal" else "proposal") if t.n == 0 else "repair",
                "files_changed": [
                    {"path": f["path"], "change": f.get("change")} for f in (t.writes.files if t.writes else [])
                ],
                "failing_before": before,
                "failing_after": after,
                "failures_after": failure_count(res),
                "tests_after": None
                if res is None
                else {"passed": res.passed, "failed": res.failed, "skipped": res.skipped, "total": res.total},
                "install": _install(t, install_requested),
                "model_ms": t.model_ms,
                "model_attempts": t.model_attempts,
                "rejected_outputs": list(t.rejected),
                "refused_writes": list(t.refused),
                "model_error": t.model_error.message if t.model_error else None,
                "confinement": {
                    k: r.confinement.model_dump()
                    for k, r in (("install", t.install), ("tests", res))
                    if r is not None and r.confinement is not None
                },
                "model_server": t.model_capabilities,
            }
        )
    last = run.transitions[-1] if run.transitions else None
    return {
        "run_id": run.run_id,
        "task": run.task,
        "mode": run.mode,
        "state": run.state.value,
        "outcome": run.outcome,
        "reason": run.reason,
        "stop": {
            "rule": run.reason,
            "trigger": last.trigger if last else None,
            "evidence": dict(last.facts) if last else {},
        }
        if run.outcome
        else None,
        "heal_turns": run.heal_turn,
        "max_turns": run.options.get("max_turns"),
        "best_turn": best_turn(history_from_run(run)) if any(t.final_tests for t in run.turns) else None,
        "timeline": [
            {"from": e.from_state, "to": e.to_state, "trigger": e.trigger, "turn": e.heal_turn} for e in run.transitions
        ],
        "turns": turns,
    }


def render_text(x: dict[str, Any]) -> str:
    lines = [
        f"run {x['run_id']}: {x['state']}" + (f" ({x['reason']})" if x.get("reason") else ""),
        f"task: {x['task']}",
    ]
    lines.append(
        "timeline: " + " → ".join([x["timeline"][0]["from"]] + [t["to"] for t in x["timeline"]])
        if x["timeline"]
        else "timeline: requested"
    )
    for t in x["turns"]:
        head = f"turn {t['turn']} ({t['kind']})"
        if t["model_ms"] is not None:
            head += f": model {t['model_ms']} ms, {t['model_attempts']} call(s)"
        lines.append(head)
        if t["files_changed"]:
            lines.append("  files: " + ", ".join(f"{f['path']} ({f['change']})" for f in t["files_changed"]))
        if t["failing_before"] is not None:
            lines.append(f"  failing before: {len(t['failing_before'])} {t['failing_before'][:5]}")
        if t["failing_after"] is not None:
            lines.append(f"  failing after: {len(t['failing_after'])} {t['failing_after'][:5]}")
        elif t["tests_after"] is not None:
            lines.append("  tests after: no telling result (timed out, or no test ran)")
        lines.append(f"  install: {t['install']}")
        for r in t["rejected_outputs"]:
            lines.append(f"  rejected output: {r}")
        for r in t["refused_writes"]:
            lines.append(f"  refused write: {r}")
        if t["model_error"]:
            lines.append(f"  model error: {t['model_error']}")
        for step, c in t.get("confinement", {}).items():
            net = "" if c.get("sandbox") != "bwrap" else (", network on" if c.get("network") else ", network off")
            lines.append(f"  confinement ({step}): {c.get('sandbox')} (--sandbox {c.get('mode')}{net})")
        caps = t.get("model_server") or {}
        for f in caps.get("learned") or []:
            lines.append(f"  server fallback: {f['parameter']} {f['from']} -> {f['to']} ({f['message'][:100]})")
        if caps.get("tools") in ("refused", "offered without response_format") and caps.get("learned") is not None:
            lines.append(f"  server tools: {caps['tools']}")
    if x["stop"]:
        ev = ", ".join(f"{k}={v}" for k, v in x["stop"]["evidence"].items() if k not in ("failures",))
        lines.append(f"stopped by: {x['stop']['rule']} (trigger {x['stop']['trigger']}){': ' + ev if ev else ''}")
    if x["best_turn"] is not None:
        lines.append(f"best turn: {x['best_turn']}")
    return "\n".join(lines)


#: The fact of a terminal event that says, in one line, why the run ended there.
_DETAIL_KEYS = ("detail", "why", "message", "error")


def _first_line(text: object, limit: int = 300) -> str:
    line = next((ln.strip() for ln in str(text or "").splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _install_detail(run: Run, facts: dict[str, Any]) -> str:
    """`command` exit N: first error line; or why the command could not start at all."""
    r = next((t.install for t in reversed(run.turns) if t.install is not None), None)
    command = f"`{(r.command if r is not None else None) or facts.get('command') or 'install'}`"
    if r is not None and r.error and r.exit_code is None:
        return f"{command} could not run: {_first_line(r.error)}"
    line = str(facts.get("detail") or (r.first_error_line() if r is not None else ""))
    code = facts.get("exitCode", r.exit_code if r is not None else None)
    return f"{command} exit {code}" + (f": {line}" if line else "")


def outcome_detail(run: Run, server_url: str = "") -> str:
    """The one fact that explains the run's end ('' when the reason says it all), on one bounded line.

    ``server_url`` is the model server's address, named when the server is why the run ended.
    """
    facts = dict(run.transitions[-1].facts) if run.transitions else {}
    reason = run.reason or ""
    detail = ""
    if reason in ("model_unavailable", "model_timeout", "context_overflow"):
        detail = _first_line(facts.get("message"))
        if server_url and server_url not in detail:
            detail = f"{detail} ({server_url})" if detail else server_url
    elif reason in ("install_failed", "install_timeout"):
        detail = _install_detail(run, facts)
    elif reason == "install_refused":
        refused = facts.get("refused")
        items = [str(x) for x in refused] if isinstance(refused, list) else [str(refused or "")]
        detail = "; ".join(_first_line(x) for x in items if x) or _install_detail(run, facts)
    elif reason in ("tests_failed", "budget_exhausted", "off_target_edit", "no_progress") and facts.get("failing"):
        names = [str(n) for n in facts["failing"]]
        detail = (
            f"{facts.get('failed', len(names))} failing: " + ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
        )
    elif reason == "test_timeout":
        detail = f"{facts.get('command')} ran over its time limit"
    elif reason == "verification_passed":
        detail = f"{facts.get('passed')} tests passed (`{facts.get('command')}`)"
    elif reason == "invalid_proposal":
        errors = facts.get("errors") or []
        detail = _first_line(errors[-1]) if errors else ""
    elif reason == "unsafe_write":
        refused = facts.get("refused") or []
        detail = _first_line(refused[0]) if refused else ""
    else:
        detail = next((str(facts[k]) for k in _DETAIL_KEYS if facts.get(k)), "")
    detail = " ".join(detail.split())
    return detail if len(detail) <= 300 else detail[:299] + "…"


def one_line(run: Run, server_url: str = "") -> str:
    """The run's outcome in one line: ``state (reason: detail)``.

    The detail is the terminal event's own (a no_verification cause, an install's
    first error line, a model error and the server's address); e.g. ``failed
    (install_failed: `uv sync` exit 2: error: No `project` table found``. A run
    still going reads as its state.
    """
    if not run.reason:
        return run.state.value
    detail = outcome_detail(run, server_url)
    return f"{run.state.value} ({run.reason}{': ' + detail if detail else ''})"
