"""The heal loop end to end: the real ``kodr`` CLI, a scripted model over HTTP, real node and pytest.

One test per way the loop stops (passed after one and after two repairs, budget
spent, no progress, off-target edit, repair timeout, invalid repair output), plus
``kodr heal`` on a workspace no model wrote, the install skipped when a repair
leaves every manifest alone, and what a repair turn sends and leaves behind.

Every test also reads the run back through ``kodr explain RUN`` (text) and
``kodr explain RUN --json`` and checks what a user would ask them: which rule
stopped the loop and on what evidence, what each turn changed, what failed before
and after it, what happened to the install, how long the model took, and the
best turn. Python projects need no install: the venv's python (on PATH, see
conftest) runs ``python -m pytest``.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Result, chain, envelope, events_of, kodr, tagged_processes
from tests.support.scripted_server import ScriptedServer, Turn

TASK = "write add"

# -- a node project: one test file, one implementation ------------------------------

NODE_PKG = (
    json.dumps({"name": "calc", "version": "1.0.0", "private": True, "scripts": {"test": "node --test"}}, indent=2)
    + "\n"
)
NODE_TEST = """const test = require('node:test');
const assert = require('node:assert/strict');
const { add } = require('./calc.js');
test('adds two numbers', () => assert.equal(add(2, 3), 5));
test('adds zero', () => assert.equal(add(4, 0), 4));
"""
NODE_FORMAT = "function fmt(n) {\n  return String(n);\n}\nmodule.exports = { fmt };\n"


def node_impl(expr: str) -> str:
    return f"function add(a, b) {{\n  return {expr};\n}}\nmodule.exports = {{ add }};\n"


NODE_BUGGY = node_impl("a - b")  # 'adds two numbers' fails, 'adds zero' passes
NODE_FIXED = node_impl("a + b")
NODE_FILES = {"package.json": NODE_PKG, "calc.js": NODE_BUGGY, "calc.test.js": NODE_TEST}

# -- a pytest project: tests/test_calc.py tests calc.py at the root --------------------

PY_TEST = """from calc import add, mul


def test_add():
    assert add(2, 3) == 5


def test_mul():
    assert mul(2, 3) == 6


def test_add_zero():
    assert add(4, 0) == 4
"""


def py_impl(add_expr: str, mul_expr: str) -> str:
    return f"def add(a, b):\n    return {add_expr}\n\n\ndef mul(a, b):\n    return {mul_expr}\n"


PY_BUGGY_ADD = py_impl("a - b", "a * b")  # test_add fails
PY_BUGGY_BOTH = py_impl("a - b", "a + b")  # test_add and test_mul fail
PY_FIXED = py_impl("a + b", "a * b")
PY_FILES = {"calc.py": PY_BUGGY_ADD, "tests/test_calc.py": PY_TEST}

NODE_RUN = ("--test", "node --test")
NPM_RUN = ("--test", "npm test")
PY_RUN = ("--test", "python -m pytest")

REPAIR_ARTIFACTS = {
    "prompt.md",
    "context.json",
    "response.json",
    "writes.json",
    "diff.patch",
    "tests.json",
    "errors.json",
}


# -- helpers ------------------------------------------------------------------------


def heal_run(ws: Path, script: list[Any], *args: str) -> tuple[Result, list[dict[str, Any]], float]:
    """``kodr run --heal`` against a scripted server: (result, chat requests, seconds taken)."""
    with ScriptedServer(script) as srv:
        started = time.monotonic()
        r = kodr("run", "-p", TASK, "--base-url", srv.base_url, "--heal", *args, "--json", cwd=ws)
        took = time.monotonic() - started
        requests = srv.requests
    return r, requests, took


def summary(r: Result) -> dict[str, Any]:
    try:
        return r.json()
    except ValueError:
        raise AssertionError(f"kodr printed no JSON summary (exit {r.code}):\n{r.out}\n{r.err}") from None


def explained(ws: Path, run_id: str, state: str, reason: str, trigger: str) -> tuple[str, dict[str, Any]]:
    """``kodr explain`` in text and JSON, with what every explanation must say."""
    text_r = kodr("explain", run_id, cwd=ws)
    json_r = kodr("explain", run_id, "--json", cwd=ws)
    assert text_r.code == 0 and json_r.code == 0, text_r.err + json_r.err
    text, x = text_r.out, json_r.json()
    assert (x["run_id"], x["state"], x["outcome"], x["reason"]) == (run_id, state, state, reason)
    assert x["stop"]["rule"] == reason and x["stop"]["trigger"] == trigger
    assert x["timeline"][-1]["to"] == state and x["timeline"][-1]["trigger"] == trigger
    assert text.splitlines()[0] == f"run {run_id}: {state} ({reason})"
    assert f"stopped by: {reason} (trigger {trigger})" in text
    assert [t["turn"] for t in x["turns"]] == list(range(len(x["turns"])))
    assert [t["kind"] for t in x["turns"][1:]] == ["repair"] * (len(x["turns"]) - 1)
    # every model call that answered has its time; the artifacts' summary is the same explanation
    for t in x["turns"]:
        if t["model_attempts"] and t["model_error"] is None:
            assert isinstance(t["model_ms"], int) and t["model_ms"] >= 0, t
            assert f"turn {t['turn']} ({t['kind']}): model {t['model_ms']} ms, {t['model_attempts']} call(s)" in text
    assert artifact(ws, run_id, "repairs/summary.json") == x
    return text, x


def turn_text(text: str, n: int) -> list[str]:
    """The lines ``kodr explain`` prints for turn ``n`` (its heading included)."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"turn {n} ("))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("  ")), len(lines))
    return lines[start:end]


def artifact(ws: Path, run_id: str, name: str) -> Any:
    return json.loads((ws / ".kodr" / "runs" / run_id / name).read_text())


def of_type(records: list, type_: str) -> list:
    return [r.event for r in records if r.type == type_]


def transitions(records: list) -> list:
    return of_type(records, "StateChanged")


FIRST_VERIFY = [
    "RunRequested",
    "StateChanged:propose",
    "ModelCallStarted",
    "ModelCallCompleted",
    "ProposalAccepted",
    "WritesStarted",
    "WritesApplied",
    "StateChanged:apply",
    "StateChanged:verify",
    "TestsStarted",
    "TestsFinished",
]
REPAIR = [
    "StateChanged:heal",
    "ModelCallStarted",
    "ModelCallCompleted",
    "ProposalAccepted",
    "WritesStarted",
    "WritesApplied",
]
#: verify a repair on a narrowable runner: the failing files first, then the full suite when they pass
VERIFY_PASSING_FIRST = ["StateChanged:verify", "TestsStarted", "TestsFinished", "TestsStarted", "TestsFinished"]
VERIFY_ONCE = ["StateChanged:verify", "TestsStarted", "TestsFinished"]


# -- passed ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "files,fix,impl,failing_file,failing_name,flags",
    [
        (NODE_FILES, NODE_FIXED, "calc.js", "calc.test.js", "adds two numbers", NODE_RUN),
        (PY_FILES, PY_FIXED, "calc.py", "tests/test_calc.py", "test_add", PY_RUN),
    ],
    ids=["node", "pytest"],
)
def test_passes_after_one_repair_turn(workspace: Path, files, fix, impl, failing_file, failing_name, flags) -> None:
    r, requests, _ = heal_run(workspace, [envelope(files), envelope({impl: fix}, "fix add")], *flags)
    out = summary(r)
    assert r.code == 0, r.err
    assert (out["state"], out["reason"], out["heal_turn"]) == ("passed", "verification_passed", 1)
    records = events_of(workspace, out["run_id"])
    assert chain(records) == FIRST_VERIFY + REPAIR + VERIFY_PASSING_FIRST + ["StateChanged:succeed"]
    started = of_type(records, "TestsStarted")
    assert [(s.turn, s.scope, s.files) for s in started] == [
        (0, "full", []),
        (1, "failing", [failing_file]),
        (1, "full", []),
    ]
    assert [q["body"]["messages"][-1]["content"].count(failing_name) > 0 for q in requests] == [False, True]
    assert str(workspace) not in requests[1]["body"]["messages"][-1]["content"]
    assert (workspace / impl).read_text() == fix

    text, x = explained(workspace, out["run_id"], "passed", "verification_passed", "succeed")
    ev = x["stop"]["evidence"]
    assert (ev["scope"], ev["failed"], ev["exitCode"]) == ("full", 0, 0) and ev["passed"] == ev["total"] > 0
    assert (x["heal_turns"], x["best_turn"], x["mode"]) == (1, 1, "run")
    t0, t1 = x["turns"]
    assert t0["kind"] == "proposal" and {f["path"] for f in t0["files_changed"]} == set(files)
    assert t0["failing_before"] is None and t0["failing_after"] == [failing_name]
    assert t1["files_changed"] == [{"path": impl, "change": "modified"}]
    assert (t1["failing_before"], t1["failing_after"], t1["failures_after"]) == ([failing_name], [], 0)
    assert t0["install"] == t1["install"] == "not requested"
    assert (t1["model_attempts"], t1["rejected_outputs"], t1["model_error"]) == (1, [], None)
    block = turn_text(text, 1)
    assert block[0].startswith(f"turn 1 (repair): model {t1['model_ms']} ms, 1 call(s)")
    assert f"  files: {impl} (modified)" in block
    assert f"  failing before: 1 ['{failing_name}']" in block and "  failing after: 0 []" in block
    assert "  install: not requested" in block
    assert "stopped by: verification_passed (trigger succeed): " in text and "failed=0" in text
    assert text.rstrip().endswith("best turn: 1")


def test_passes_after_two_repair_turns(workspace: Path) -> None:
    script = [
        envelope({"calc.py": PY_BUGGY_BOTH, "tests/test_calc.py": PY_TEST}),
        envelope({"calc.py": py_impl("a + b", "a + b")}, "fix add"),  # test_mul still fails
        envelope({"calc.py": PY_FIXED}, "fix mul"),
    ]
    r, requests, _ = heal_run(workspace, script, *PY_RUN)
    out = summary(r)
    assert r.code == 0, r.err
    assert (out["state"], out["reason"], out["heal_turn"]) == ("passed", "verification_passed", 2)
    records = events_of(workspace, out["run_id"])
    # turn 1: the failing file still fails, so no full run; turn 2: failing file passes, then the full suite
    assert chain(records) == (
        FIRST_VERIFY + REPAIR + VERIFY_ONCE + REPAIR + VERIFY_PASSING_FIRST + ["StateChanged:succeed"]
    )
    assert [t.heal_turn for t in transitions(records) if t.trigger == "heal"] == [1, 2]
    assert len(requests) == 3 and "test_mul" in requests[2]["body"]["messages"][-1]["content"]
    assert (workspace / "calc.py").read_text() == PY_FIXED

    text, x = explained(workspace, out["run_id"], "passed", "verification_passed", "succeed")
    assert (x["heal_turns"], x["best_turn"], x["max_turns"]) == (2, 2, 3)
    t0, t1, t2 = x["turns"]
    assert sorted(t0["failing_after"]) == ["test_add", "test_mul"]
    assert t1["files_changed"] == t2["files_changed"] == [{"path": "calc.py", "change": "modified"}]
    assert sorted(t1["failing_before"]) == ["test_add", "test_mul"] and t1["failing_after"] == ["test_mul"]
    assert (t2["failing_before"], t2["failing_after"]) == (["test_mul"], [])
    assert [t["failures_after"] for t in x["turns"]] == [2, 1, 0]
    assert all(t["install"] == "not requested" for t in x["turns"])
    assert "  failing after: 1 ['test_mul']" in turn_text(text, 1)
    assert "  failing before: 1 ['test_mul']" in turn_text(text, 2)
    assert "  failing after: 0 []" in turn_text(text, 2)
    assert "best turn: 2" in text


# -- failed: budget spent ---------------------------------------------------------------------


def test_budget_spent_fails_with_budget_exhausted(workspace: Path) -> None:
    script = [
        envelope(NODE_FILES),
        envelope({"calc.js": node_impl("a * b")}, "try multiplying"),  # both tests fail now
        envelope({"calc.js": node_impl("a - b - 0")}, "try again"),  # back to one failure
        envelope({"calc.js": NODE_FIXED}),  # never asked for: the budget is 2
    ]
    r, requests, _ = heal_run(workspace, script, *NPM_RUN, "--max-turns", "2")
    out = summary(r)
    assert r.code == 10, r.err
    assert (out["state"], out["reason"], out["heal_turn"]) == ("failed", "budget_exhausted", 2)
    assert len(requests) == 3
    records = events_of(workspace, out["run_id"])
    # npm scripts cannot be narrowed to the failing files: every verification is the full suite
    assert chain(records) == (
        FIRST_VERIFY + REPAIR + VERIFY_ONCE + REPAIR + VERIFY_ONCE + ["StateChanged:fail", "WorkspaceRestored"]
    )
    assert {s.scope for s in of_type(records, "TestsStarted")} == {"full"}
    last = transitions(records)[-1]
    assert (last.from_state, last.to_state, last.outcome, last.reason) == (
        "verifying",
        "failed",
        "failed",
        "budget_exhausted",
    )
    assert last.facts["max_turns"] == 2 and last.facts["failures_per_turn"] == [1, 2, 1]
    assert last.facts["best_turn"] == 0  # a tie goes to the earliest turn
    # the run stopped without passing: the workspace is back at the best turn (0), recorded
    assert (workspace / "calc.js").read_text() == NODE_BUGGY
    restored = of_type(records, "WorkspaceRestored")[-1].files
    assert [(f["path"], f["why"]) for f in restored] == [("calc.js", "best turn 0")]

    text, x = explained(workspace, out["run_id"], "failed", "budget_exhausted", "fail")
    ev = x["stop"]["evidence"]
    assert (ev["max_turns"], ev["failures_per_turn"], ev["best_turn"]) == (2, [1, 2, 1], 0)
    assert (x["heal_turns"], x["max_turns"], x["best_turn"]) == (2, 2, 0)
    assert [t["files_changed"] for t in x["turns"][1:]] == [[{"path": "calc.js", "change": "modified"}]] * 2
    assert [t["failures_after"] for t in x["turns"]] == [1, 2, 1]
    assert x["turns"][1]["failing_before"] == ["adds two numbers"]
    assert sorted(x["turns"][1]["failing_after"]) == ["adds two numbers", "adds zero"]
    assert x["turns"][2]["failing_after"] == ["adds two numbers"]
    assert "stopped by: budget_exhausted (trigger fail): " in text
    assert "max_turns=2" in text and "failures_per_turn=[1, 2, 1]" in text
    assert "  failing after: 2" in "\n".join(turn_text(text, 1))
    assert text.rstrip().endswith("best turn: 0")


# -- stalled: no progress ----------------------------------------------------------------------


def test_two_repairs_that_change_nothing_stall_with_no_progress(workspace: Path) -> None:
    script = [
        envelope(PY_FILES),
        envelope({"calc.py": PY_BUGGY_ADD}, "looks right to me"),
        envelope({"calc.py": PY_BUGGY_ADD}, "still looks right"),
        envelope({"calc.py": PY_FIXED}),
    ]
    r, requests, _ = heal_run(workspace, script, *PY_RUN)
    out = summary(r)
    assert r.code == 11, r.err
    assert (out["state"], out["reason"], out["heal_turn"]) == ("stalled", "no_progress", 2)
    assert len(requests) == 3
    records = events_of(workspace, out["run_id"])
    # the second no-change repair stops the loop before any test runs again
    assert chain(records) == FIRST_VERIFY + REPAIR + VERIFY_ONCE + REPAIR + ["StateChanged:stall"]
    applied = of_type(records, "WritesApplied")
    assert [[f["change"] for f in a.files] for a in applied] == [["created", "created"], ["unchanged"], ["unchanged"]]
    last = transitions(records)[-1]
    assert (last.from_state, last.to_state, last.reason) == ("healing", "stalled", "no_progress")
    assert last.facts["turns"] == [1, 2] and re.fullmatch(r"[0-9a-f]{64}", last.facts["manifest_hash"])

    text, x = explained(workspace, out["run_id"], "stalled", "no_progress", "stall")
    assert x["stop"]["evidence"] == last.facts
    t0, t1, t2 = x["turns"]
    assert t1["files_changed"] == t2["files_changed"] == [{"path": "calc.py", "change": "unchanged"}]
    assert (t1["failing_before"], t1["failing_after"]) == (["test_add"], ["test_add"])
    assert (t2["failing_before"], t2["failing_after"], t2["tests_after"]) == (["test_add"], None, None)
    assert x["best_turn"] == 0
    assert "  files: calc.py (unchanged)" in turn_text(text, 1) and "  files: calc.py (unchanged)" in turn_text(text, 2)
    assert not any(ln.startswith("  failing after") for ln in turn_text(text, 2))
    assert "stopped by: no_progress (trigger stall): " in text
    assert "turns=[1, 2]" in text and f"manifest_hash={last.facts['manifest_hash']}" in text
    assert "best turn: 0" in text


# -- stalled: off-target edit ------------------------------------------------------------------


def test_repair_editing_an_unrelated_file_stalls_with_off_target_edit(workspace: Path) -> None:
    files = dict(NODE_FILES, **{"format.js": NODE_FORMAT})
    unrelated = NODE_FORMAT.replace("String(n)", "String(n).trim()")
    script = [envelope(files), envelope({"format.js": unrelated}, "tidy format"), envelope({"calc.js": NODE_FIXED})]
    r, requests, _ = heal_run(workspace, script, *NODE_RUN)
    out = summary(r)
    assert r.code == 11, r.err
    assert (out["state"], out["reason"], out["heal_turn"]) == ("stalled", "off_target_edit", 1)
    assert len(requests) == 2
    records = events_of(workspace, out["run_id"])
    # the failing file is run first; it still fails, so the brake judges that result
    assert chain(records) == FIRST_VERIFY + REPAIR + VERIFY_ONCE + ["StateChanged:stall", "WorkspaceRestored"]
    assert (workspace / "format.js").read_text() == NODE_FORMAT  # back at the best turn (0)
    allowed = of_type(records, "ModelCallStarted")[1].allowed_paths
    assert {"calc.js", "calc.test.js"} <= set(allowed) and "format.js" not in allowed
    last = transitions(records)[-1]
    assert (last.from_state, last.to_state, last.reason) == ("verifying", "stalled", "off_target_edit")
    assert (last.facts["turn"], last.facts["paths"], last.facts["strictness"]) == (1, ["format.js"], "strict")
    assert last.facts["allowed"] == sorted(allowed)
    assert last.facts["failing"] == ["adds two numbers"]
    assert artifact(workspace, out["run_id"], "repairs/turn-1/context.json")["allowed_paths"] == sorted(allowed)

    text, x = explained(workspace, out["run_id"], "stalled", "off_target_edit", "stall")
    ev = x["stop"]["evidence"]
    assert (ev["paths"], ev["allowed"], ev["turn"]) == (["format.js"], sorted(allowed), 1)
    t1 = x["turns"][1]
    assert t1["files_changed"] == [{"path": "format.js", "change": "modified"}]
    assert t1["failing_before"] == t1["failing_after"] == ["adds two numbers"]
    assert "  files: format.js (modified)" in turn_text(text, 1)
    assert "stopped by: off_target_edit (trigger stall): " in text and "paths=['format.js']" in text
    assert "strictness=strict" in text
    assert x["best_turn"] == 0 and "best turn: 0" in text


# -- timed out: the repair call never answers --------------------------------------------------


def test_repair_call_that_never_answers_times_out(workspace: Path) -> None:
    script = [envelope(NODE_FILES), Turn(hang=True), Turn(hang=True), Turn(hang=True)]
    r, requests, took = heal_run(workspace, script, *NODE_RUN, "--repair-timeout", "2")
    out = summary(r)
    assert r.code == 12, r.err
    assert (out["state"], out["reason"], out["heal_turn"]) == ("timed_out", "model_timeout", 1)
    assert took < 15, f"a 2 s repair timeout took {took:.1f} s"
    assert len(requests) == 2, "a call past its deadline is cancelled, not retried"
    records = events_of(workspace, out["run_id"])
    assert chain(records) == FIRST_VERIFY + [
        "StateChanged:heal",
        "ModelCallStarted",
        "ModelCallFailed",
        "StateChanged:time_out",
    ]
    failed = of_type(records, "ModelCallFailed")[0]
    assert (failed.purpose, failed.turn, failed.attempt, failed.error) == ("repair", 1, 1, "timeout")
    assert 1900 <= failed.duration_ms < 10_000
    last = transitions(records)[-1]
    assert (last.from_state, last.to_state, last.reason) == ("healing", "timed_out", "model_timeout")
    assert last.facts["error"] == "timeout" and last.facts["duration_ms"] == failed.duration_ms
    assert (workspace / "calc.js").read_text() == NODE_BUGGY
    errors = artifact(workspace, out["run_id"], "repairs/turn-1/errors.json")
    assert [e["kind"] for e in errors] == ["model_timeout"]

    text, x = explained(workspace, out["run_id"], "timed_out", "model_timeout", "time_out")
    ev = x["stop"]["evidence"]
    assert ev["error"] == "timeout" and ev["duration_ms"] == failed.duration_ms and ev["attempt"] == 1
    t1 = x["turns"][1]
    assert (t1["files_changed"], t1["model_ms"], t1["model_attempts"]) == ([], None, 1)
    assert t1["model_error"] == failed.message and "2s deadline" in failed.message
    assert (t1["failing_before"], t1["failing_after"]) == (["adds two numbers"], None)
    assert f"  model error: {failed.message}" in turn_text(text, 1)
    assert f"duration_ms={failed.duration_ms}" in text and "error=timeout" in text
    assert x["best_turn"] == 0 and "best turn: 0" in text


# -- failed: invalid repair output -------------------------------------------------------------


def test_two_invalid_repair_replies_fail_with_invalid_proposal(workspace: Path) -> None:
    script = [
        envelope(PY_FILES),
        "Sure! Just change the minus to a plus.",
        '{"summary": 3}',
        envelope({"calc.py": PY_FIXED}),
    ]
    r, requests, _ = heal_run(workspace, script, *PY_RUN)
    out = summary(r)
    assert r.code == 10, r.err
    assert (out["state"], out["reason"], out["heal_turn"]) == ("failed", "invalid_proposal", 1)
    assert len(requests) == 3
    retry_note = requests[2]["body"]["messages"][-1]["content"]
    assert "rejected" in retry_note
    records = events_of(workspace, out["run_id"])
    assert chain(records) == FIRST_VERIFY + [
        "StateChanged:heal",
        "ModelCallStarted",
        "ModelCallCompleted",
        "ProposalRejected",
        "ModelCallStarted",
        "ModelCallCompleted",
        "ProposalRejected",
        "StateChanged:fail",
    ]
    rejected = of_type(records, "ProposalRejected")
    assert [(e.purpose, e.turn, e.attempt) for e in rejected] == [("repair", 1, 1), ("repair", 1, 2)]
    last = transitions(records)[-1]
    assert (last.from_state, last.to_state, last.reason) == ("healing", "failed", "invalid_proposal")
    assert last.facts["errors"] == [e.error for e in rejected]
    assert (workspace / "calc.py").read_text() == PY_BUGGY_ADD
    errors = artifact(workspace, out["run_id"], "repairs/turn-1/errors.json")
    assert errors == [{"kind": "invalid_output", "message": e.error} for e in rejected]

    text, x = explained(workspace, out["run_id"], "failed", "invalid_proposal", "fail")
    assert x["stop"]["evidence"]["errors"] == [e.error for e in rejected]
    t1 = x["turns"][1]
    assert (t1["model_attempts"], t1["rejected_outputs"], t1["files_changed"]) == (2, [e.error for e in rejected], [])
    assert isinstance(t1["model_ms"], int)
    assert (t1["failing_before"], t1["failing_after"]) == (["test_add"], None)
    block = turn_text(text, 1)
    assert block[0].startswith("turn 1 (repair): model ") and block[0].endswith("2 call(s)")
    assert [ln for ln in block if ln.startswith("  rejected output: ")] == [
        f"  rejected output: {e.error}" for e in rejected
    ]
    assert x["best_turn"] == 0 and "best turn: 0" in text


# -- kodr heal: a workspace no model wrote -----------------------------------------------------


def _heal_existing(
    ws: Path, files: dict[str, str], fix: dict[str, str], flags: tuple[str, ...]
) -> tuple[Result, list[dict[str, Any]]]:
    """Write a failing project by hand (no model made it), then ``kodr heal`` it."""
    for path, content in files.items():
        (ws / path).parent.mkdir(parents=True, exist_ok=True)
        (ws / path).write_text(content)
    with ScriptedServer([envelope(fix, "fix add")]) as srv:
        r = kodr("heal", "--base-url", srv.base_url, *flags, "--json", cwd=ws)
        return r, srv.requests


@pytest.mark.parametrize(
    "files,fix,impl,failing_name,flags,verify_repair",
    [
        (NODE_FILES, NODE_FIXED, "calc.js", "adds two numbers", NPM_RUN, VERIFY_ONCE),
        (PY_FILES, PY_FIXED, "calc.py", "test_add", PY_RUN, VERIFY_PASSING_FIRST),
    ],
    ids=["node-npm", "pytest"],
)
def test_heal_command_adopts_an_existing_failing_workspace(
    workspace: Path, files, fix, impl, failing_name, flags, verify_repair
) -> None:
    r, requests = _heal_existing(workspace, files, {impl: fix}, flags)
    out = summary(r)
    assert r.code == 0, r.err
    assert (out["state"], out["reason"], out["heal_turn"]) == ("passed", "verification_passed", 1)
    records = events_of(workspace, out["run_id"])
    assert chain(records) == (
        ["RunRequested", "StateChanged:adopt"] + VERIFY_ONCE + REPAIR + verify_repair + ["StateChanged:succeed"]
    )
    requested = records[0].event
    assert requested.mode == "heal" and set(requested.base_snapshot) == set(files)
    adopt = transitions(records)[0]
    assert (adopt.from_state, adopt.to_state, adopt.trigger, adopt.heal_turn) == ("requested", "applied", "adopt", 0)
    assert adopt.facts["files"] == len(files)
    calls = of_type(records, "ModelCallStarted")
    assert [(c.purpose, c.turn) for c in calls] == [("repair", 1)]  # no proposal turn
    assert [p.purpose for p in of_type(records, "ProposalAccepted")] == ["repair"]
    assert len(requests) == 1 and failing_name in requests[0]["body"]["messages"][-1]["content"]
    assert (workspace / impl).read_text() == fix

    text, x = explained(workspace, out["run_id"], "passed", "verification_passed", "succeed")
    assert x["mode"] == "heal" and x["task"] == "Make the failing tests pass."
    assert [(s["from"], s["to"]) for s in x["timeline"][:2]] == [("requested", "applied"), ("applied", "verifying")]
    assert "timeline: requested → applied → verifying → healing → verifying → passed" in text
    t0, t1 = x["turns"]
    assert (t0["files_changed"], t0["model_ms"], t0["model_attempts"]) == ([], None, 0)
    assert (t0["failing_before"], t0["failing_after"]) == (None, [failing_name])
    assert t1["files_changed"] == [{"path": impl, "change": "modified"}]
    assert (t1["failing_before"], t1["failing_after"]) == ([failing_name], [])
    assert isinstance(t1["model_ms"], int)
    assert not turn_text(text, 0)[0].endswith("call(s)")  # no model call on the adopted turn
    assert "best turn: 1" in text


def test_explain_does_not_call_the_adopted_turn_of_a_heal_run_a_proposal(workspace: Path) -> None:
    """A `kodr heal` run has no proposal: its turn 0 is the workspace as found (DESIGN: "Turn 0 is the
    proposal (or the adopted workspace)"), and explain should not label it "proposal"."""
    r, _ = _heal_existing(workspace, NODE_FILES, {"calc.js": NODE_FIXED}, NODE_RUN)
    out = summary(r)
    assert out["state"] == "passed", r.err
    text, x = explained(workspace, out["run_id"], "passed", "verification_passed", "succeed")
    assert x["turns"][0]["kind"] != "proposal"
    assert "turn 0 (proposal)" not in text


# -- install: skipped when no manifest changed, run again when one did -----------------------


@pytest.mark.slow
def test_repair_that_leaves_manifests_unchanged_skips_the_install(workspace: Path) -> None:
    script = [
        envelope(NODE_FILES),
        envelope({"calc.js": node_impl("a + b + 0 * a - (b === 3 ? 1 : 0)")}, "almost"),  # still fails
        envelope(
            {"calc.js": NODE_FIXED, "package.json": NODE_PKG.replace('"private"', '"description": "x",\n  "private"')},
            "fix add, describe the package",
        ),
    ]
    r, _, _ = heal_run(workspace, script, *NPM_RUN, "--install")
    out = summary(r)
    assert r.code == 0, r.err
    assert (out["state"], out["reason"], out["heal_turn"]) == ("passed", "verification_passed", 2)
    records = events_of(workspace, out["run_id"])
    installed = of_type(records, "InstallStarted")
    assert [i.turn for i in installed] == [0, 2]  # turn 1 left package.json alone; turn 2 changed it
    skipped = of_type(records, "InstallSkipped")
    assert [(s.turn, s.why) for s in skipped] == [(1, "no dependency manifest changed")]
    c = chain(records)
    turn1_writes = [i for i, rec in enumerate(records) if rec.type == "WritesApplied"][1]
    assert c[turn1_writes : turn1_writes + 3] == ["WritesApplied", "InstallSkipped", "StateChanged:verify"]
    verify1 = records[turn1_writes + 2].event
    assert verify1.facts == {"install": "skipped: no dependency manifest changed"} and verify1.heal_turn == 1
    install2 = [t for t in transitions(records) if t.trigger == "install"][-1]
    assert (install2.from_state, install2.facts) == ("healing", {"manifests_changed": ["package.json"]})
    assert not (workspace / ".kodr" / "runs" / out["run_id"] / "repairs" / "turn-1" / "install.json").exists()
    assert artifact(workspace, out["run_id"], "repairs/turn-2/install.json")["ok"] is True

    text, x = explained(workspace, out["run_id"], "passed", "verification_passed", "succeed")
    t0, t1, t2 = x["turns"]
    assert t0["install"].startswith("ran `npm install") and "exit 0" in t0["install"]
    assert t1["install"] == "skipped: no dependency manifest changed"
    assert t2["install"].startswith("ran `npm install") and "exit 0" in t2["install"]
    assert t1["files_changed"] == [{"path": "calc.js", "change": "modified"}]
    assert t2["files_changed"] == [
        {"path": "calc.js", "change": "modified"},
        {"path": "package.json", "change": "modified"},
    ]
    assert "  install: skipped: no dependency manifest changed" in turn_text(text, 1)
    assert any(ln.startswith("  install: ran `npm install") for ln in turn_text(text, 2))
    assert "best turn: 2" in text


# -- what a repair turn sends, and what it leaves behind ---------------------------------------


def test_repair_prompt_and_turn_artifacts(workspace: Path) -> None:
    fix = envelope({"calc.py": PY_FIXED}, "fix add")
    r, requests, _ = heal_run(workspace, [envelope(PY_FILES), fix], *PY_RUN)
    out = summary(r)
    assert r.code == 0, r.err
    run_id = out["run_id"]
    repair_messages = requests[1]["body"]["messages"]
    prompt = repair_messages[-1]["content"]
    assert repair_messages[-1]["role"] == "user"
    assert "test_add" in prompt and "test_mul" not in prompt.split("## Files")[0]  # only the failing test
    assert "### `tests/test_calc.py` (failing)" in prompt
    assert "### `calc.py` (sibling)" in prompt and PY_BUGGY_ADD.rstrip("\n") in prompt
    assert "assert add(2, 3) == 5" in prompt
    assert str(workspace) not in prompt  # stack paths are made workspace-relative

    turn = workspace / ".kodr" / "runs" / run_id / "repairs" / "turn-1"
    assert {p.name for p in turn.iterdir()} == REPAIR_ARTIFACTS
    prompt_md = (turn / "prompt.md").read_text()
    assert "## system" in prompt_md and "## user" in prompt_md and prompt in prompt_md
    context = json.loads((turn / "context.json").read_text())
    assert context["failing_paths"][0] == "tests/test_calc.py"
    assert {(f["path"], f["role"]) for f in context["files"]} >= {
        ("tests/test_calc.py", "failing"),
        ("calc.py", "sibling"),
    }
    assert [f["name"] for f in context["failures"]] == ["test_add"]
    assert {"tests/test_calc.py", "calc.py"} <= set(context["allowed_paths"])
    response = json.loads((turn / "response.json").read_text())
    assert json.loads(response["content"]) == fix
    writes = json.loads((turn / "writes.json").read_text())
    assert [(w["path"], w["change"]) for w in writes] == [("calc.py", "modified")]
    diff = (turn / "diff.patch").read_text()
    assert "--- a/calc.py" in diff and "+++ b/calc.py" in diff
    assert "-    return a - b" in diff and "+    return a + b" in diff
    tests = json.loads((turn / "tests.json").read_text())
    assert (tests["ok"], tests["failed"], tests["total"], tests["scope"]) == (True, 0, 3, "full")
    assert json.loads((turn / "errors.json").read_text()) == []
    assert (workspace / ".kodr" / "runs" / run_id / "repairs" / "summary.json").is_file()

    text, x = explained(workspace, run_id, "passed", "verification_passed", "succeed")
    assert x["turns"][1]["failing_before"] == ["test_add"] and x["turns"][1]["failing_after"] == []
    assert "  files: calc.py (modified)" in turn_text(text, 1)
    assert "best turn: 1" in text


# -- honest results inside the loop -------------------------------------------------------------


def test_repair_that_deletes_every_test_does_not_pass(workspace: Path) -> None:
    """A repair that empties the failing test file leaves a suite in which no test executes.

    DESIGN (Verify): "A run in which no test executed fails with no_verification: kodr never
    reports success it did not see." Node 20 reports a test file that defines no test as one
    passing testcase named after the file's absolute path; that placeholder is not a test.
    """
    gutted = "// the tests were in the way\nrequire('./calc.js');\n"
    script = [envelope(NODE_FILES), envelope({"calc.test.js": gutted}, "remove the failing test")]
    r, _, _ = heal_run(workspace, script, *NPM_RUN)
    out = summary(r)
    assert (out["state"], out["reason"]) == ("failed", "no_verification"), out
    assert r.code == 10
    tests = artifact(workspace, out["run_id"], "repairs/turn-1/tests.json")
    assert tests["total"] == 0, tests
    text, x = explained(workspace, out["run_id"], "failed", "no_verification", "fail")
    assert x["best_turn"] == 0


def test_repair_that_makes_the_tests_hang_times_out_and_is_not_the_best_turn(workspace: Path) -> None:
    """A repair whose tests run past --test-timeout: timed_out/test_timeout. Nothing was seen to
    pass, so explain must not show the turn as "failing after: 0 []" nor pick it as the best turn
    (brakes.best_turn: a timed-out result counts only when no turn has a telling one)."""
    script = [envelope(NODE_FILES), envelope({"calc.js": node_impl("(() => { while (true) {} })()")}, "loop")]
    r, _, took = heal_run(workspace, script, *NPM_RUN, "--test-timeout", "3")
    out = summary(r)
    assert r.code == 12, r.err
    assert (out["state"], out["reason"], out["heal_turn"]) == ("timed_out", "test_timeout", 1)
    assert took < 30 and tagged_processes(out["run_id"]) == []
    records = events_of(workspace, out["run_id"])
    assert chain(records) == FIRST_VERIFY + REPAIR + VERIFY_ONCE + ["StateChanged:time_out", "WorkspaceRestored"]
    assert (workspace / "calc.js").read_text() == NODE_BUGGY  # the hanging repair is not left behind
    assert of_type(records, "TestsFinished")[-1].result["timedOut"] is True

    text, x = explained(workspace, out["run_id"], "timed_out", "test_timeout", "time_out")
    t1 = x["turns"][1]
    assert t1["files_changed"] == [{"path": "calc.js", "change": "modified"}]
    assert t1["failing_before"] == ["adds two numbers"]
    assert t1["failing_after"] != [] and "  failing after: 0 []" not in turn_text(text, 1)
    assert x["best_turn"] == 0 and "best turn: 0" in text


def test_repair_that_deletes_the_failing_test_does_not_pass(workspace: Path) -> None:
    """Other tests still pass, but the failing one vanished instead of passing: failed/tests_removed."""
    only_zero = NODE_TEST.replace("test('adds two numbers', () => assert.equal(add(2, 3), 5));\n", "")
    script = [envelope(NODE_FILES), envelope({"calc.test.js": only_zero}, "drop the failing test")]
    r, _, _ = heal_run(workspace, script, *NODE_RUN)
    out = summary(r)
    assert (out["state"], out["reason"]) == ("failed", "tests_removed"), out
    assert out["facts"]["total_before"] == 2 and out["facts"]["total"] == 1
    assert r.code == 10


# -- a real mocha project (mocha from the registry, its default spec reporter) -------------

MOCHA_PKG = (
    json.dumps(
        {
            "name": "calc-mocha",
            "version": "1.0.0",
            "private": True,
            "scripts": {"test": "mocha"},
            "devDependencies": {"mocha": "12.0.3"},
        },
        indent=2,
    )
    + "\n"
)
MOCHA_TEST = """const assert = require('assert');
const { add, sub } = require('../src/calc');
describe('calc', () => {
  it('adds', () => { assert.strictEqual(add(2, 3), 5); });
  it('subtracts', () => { assert.strictEqual(sub(5, 2), 3); });
  describe('edge cases', () => {
    it('adds zero', () => { assert.strictEqual(add(4, 0), 4); });
    it.skip('subtracts big numbers', () => {});
  });
});
"""
MOCHA_BUGGY = "exports.add = (a, b) => a + b;\nexports.sub = (a, b) => a + b;\n"
MOCHA_FIXED = "exports.add = (a, b) => a + b;\nexports.sub = (a, b) => a - b;\n"
MOCHA_FILES = {"package.json": MOCHA_PKG, "src/calc.js": MOCHA_BUGGY, "test/calc.test.js": MOCHA_TEST}


@pytest.mark.slow
def test_heal_a_real_mocha_project_reaches_the_model_and_passes(workspace: Path) -> None:
    """issue 9: mocha as published (``npm test`` → ``mocha``, spec reporter) read as 2 passing, 1 failing,
    1 pending, the failure named and located, the model called with it, and the fix verified."""
    r, requests = _heal_existing(workspace, MOCHA_FILES, {"src/calc.js": MOCHA_FIXED}, ("--install", *NPM_RUN))
    out = summary(r)
    assert r.code == 0, r.err
    assert (out["state"], out["reason"], out["heal_turn"]) == ("passed", "verification_passed", 1)
    records = events_of(workspace, out["run_id"])
    results = [t.result for t in of_type(records, "TestsFinished")]
    first, last = results[0], results[-1]
    assert (first["parser"], first["passed"], first["failed"], first["skipped"], first["total"]) == (
        "mocha-text",
        2,
        1,
        1,
        4,
    )
    [f] = first["failures"]
    assert (f["name"], f["file"], f["line"]) == ("calc > subtracts", "test/calc.test.js", 5)
    assert "7 !== 3" in f["message"]
    assert (last["parser"], last["passed"], last["failed"], last["total"], last["ok"]) == ("mocha-text", 3, 0, 4, True)
    assert len(requests) == 1
    prompt = requests[0]["body"]["messages"][-1]["content"]
    assert "calc > subtracts" in prompt and "src/calc.js" in prompt
    assert (workspace / "src" / "calc.js").read_text() == MOCHA_FIXED


def test_mocha_not_installed_is_no_verification_with_its_cause(workspace: Path) -> None:
    """Without --install, ``npm test`` finds no mocha: the run says so in its one line and its facts."""
    r, requests = _heal_existing(workspace, MOCHA_FILES, {"src/calc.js": MOCHA_FIXED}, NPM_RUN)
    out = summary(r)
    assert (out["state"], out["reason"]) == ("failed", "no_verification")
    assert requests == []  # nothing to repair: the model is never called
    records = events_of(workspace, out["run_id"])
    facts = transitions(records)[-1].facts
    assert facts["cause"] == "runner_missing"
    assert facts["detail"].startswith("mocha not installed in the project (") and "not found" in facts["detail"]
