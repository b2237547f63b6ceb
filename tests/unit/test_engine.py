"""The Engine against in-memory fakes: what it records, writes and runs, run by run.

Each test scripts a model and a toolchain, drives a run to its end, and checks the
event chain, the workspace, the calls made and the artifacts rendered from the
history. Every finished run is also folded again from the log: the state the
engine returned must be exactly what the history says.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from kodr_core import events as ev
from kodr_core.aggregate import Run, fold
from kodr_core.artifacts import render
from kodr_core.engine import Engine
from kodr_core.errors import ConcurrencyConflict
from kodr_core.install_plan import NPM_FLAGS
from kodr_core.options import RunOptions
from kodr_core.ports import ModelError, ProcessResult
from kodr_core.results import Failure, Parser, build_install_json, build_tests_json
from kodr_core.runners.report import TestReport
from kodr_core.states import State
from tests.unit.fakes import (
    T0,
    Crash,
    FakeClock,
    FakeModel,
    FakeToolchain,
    MemoryLog,
    MemoryWorkspace,
    envelope,
    failing,
    failure,
    fake_install_json,
    fake_tests_json,
    iso_utc,
    passing,
    sha,
)

TASK = "write add"

NODE_TEST = """const test = require('node:test');
const assert = require('node:assert/strict');
const { add } = require('./calc.js');
test('adds two numbers', () => assert.equal(add(2, 3), 5));
test('adds zero', () => assert.equal(add(4, 0), 4));
"""
NODE_BUGGY = "function add(a, b) {\n  return a - b;\n}\nmodule.exports = { add };\n"
NODE_FIXED = "function add(a, b) {\n  return a + b;\n}\nmodule.exports = { add };\n"

PY_TEST = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
PY_BUGGY = "def add(a, b):\n    return a - b\n"
PY_FIXED = "def add(a, b):\n    return a + b\n"

PKG = json.dumps({"name": "calc", "version": "1.0.0", "private": True}, indent=2) + "\n"
PKG_NPM_TEST = json.dumps({"name": "calc", "scripts": {"test": "node --test"}}, indent=2) + "\n"
PKG_WITH_DEP = json.dumps({"name": "calc", "version": "1.0.0", "dependencies": {"left-pad": "^1.3.0"}}) + "\n"

NODE_FAILURE = failure("adds two numbers", "calc.test.js", 4, "Expected values to be strictly equal: -1 !== 5")
PY_FAILURE = failure("tests/test_calc.py::test_add", "tests/test_calc.py", 5, "assert -1 == 5")
NPM_INSTALL = ["npm", "install", *NPM_FLAGS]


class World:
    """One run's fakes, wired into an Engine that shares their clock."""

    def __init__(
        self,
        files: dict[str, str],
        *replies: Any,
        tests: Sequence[dict | Exception] = (),
        installs: Sequence[dict | Exception] = (),
        workspace_class: type[MemoryWorkspace] = MemoryWorkspace,
    ) -> None:
        self.clock = FakeClock()
        self.log = MemoryLog(self.clock)
        self.workspace = workspace_class(files)
        self.toolchain = FakeToolchain(tests, installs)
        self.model = FakeModel(*replies)
        self.observed: list[ev.RecordedEvent] = []
        self.refreshed: list[tuple[str, int]] = []
        self.engine = self.engine_for(self.toolchain, self.model)

    def engine_for(self, toolchain: FakeToolchain, model: FakeModel) -> Engine:
        return Engine(self.log, self.workspace, toolchain, model, artifacts=self, observer=self.observed.append,
                      clock=self.clock)  # fmt: skip

    def refresh(self, run_id: str, records) -> None:  # the ArtifactSink port
        self.refreshed.append((run_id, len(records)))

    def run(self, **options: Any) -> tuple[str, Run]:
        run_id = self.engine.request(TASK, RunOptions(**options), run_id="r1")
        return run_id, self.engine.drive(run_id)

    def types(self, run_id: str = "r1") -> list[str]:
        return self.log.types(run_id)

    def render(self, run_id: str = "r1") -> dict[str, bytes]:
        return render(run_id, self.log.load(run_id), self.log.get_blob)


def assert_history_folds_to(log: MemoryLog, run: Run) -> None:
    records = log.load(run.run_id)
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    assert fold(run.run_id, records) == run


def chain(*parts: str | list[str]) -> list[str]:
    out: list[str] = []
    for p in parts:
        out += [p] if isinstance(p, str) else p
    return out


PROPOSE = ["StateChanged", "ModelCallStarted", "ModelCallCompleted", "ProposalAccepted"]
WRITES = ["WritesStarted", "WritesApplied"]
TESTS = ["TestsStarted", "TestsFinished"]
INSTALL = ["InstallStarted", "InstallFinished"]


# -- the golden path -----------------------------------------------------------------


def test_golden_path_records_every_step_and_passes():
    w = World({"calc.test.js": NODE_TEST}, envelope({"calc.js": NODE_FIXED}), tests=[passing(2)])

    run_id, run = w.run(test_command="node --test")

    assert w.types() == chain("RunRequested", PROPOSE, WRITES, "StateChanged", "StateChanged", TESTS, "StateChanged")
    assert w.log.triggers(run_id) == ["propose", "apply", "verify", "succeed"]
    assert (run.state, run.outcome, run.reason) == (State.PASSED, "passed", "verification_passed")
    final = w.log.of_type(run_id, ev.StateChanged)[-1]
    assert (final.to_state, final.outcome, final.reason) == ("passed", "passed", "verification_passed")

    # the model was asked once, with the task and the workspace's files, under its timeout
    (started,) = w.log.of_type(run_id, ev.ModelCallStarted)
    assert (started.purpose, started.turn, started.attempt, started.key) == ("propose", 0, 1, "r1:model:0")
    assert TASK in w.model.prompt() and NODE_TEST in w.model.prompt()
    assert w.model.deadlines == [300.0]
    assert w.model.requests[0].response_schema is not None
    request = json.loads(w.log.get_blob(started.request_blob))
    assert request["messages"] == w.model.requests[0].messages

    # the file was written, and the history knows it
    assert w.workspace.text("calc.js") == NODE_FIXED
    (accepted,) = w.log.of_type(run_id, ev.ProposalAccepted)
    assert accepted.files == [{"path": "calc.js", "sha256": sha(NODE_FIXED), "bytes": len(NODE_FIXED)}]
    (applied,) = w.log.of_type(run_id, ev.WritesApplied)
    assert applied.files == [{"path": "calc.js", "sha256": sha(NODE_FIXED), "bytes": len(NODE_FIXED),
                              "change": "created"}]  # fmt: skip
    assert applied.manifest == {"calc.js": sha(NODE_FIXED), "calc.test.js": sha(NODE_TEST)}
    assert run.manifest == w.workspace.snapshot()

    # the tests ran once, whole suite, in the workspace, with the step key
    (call,) = w.toolchain.ops("test")
    assert call == {"op": "test", "argv": ["node", "--test"], "kind": "node", "cwd": "/ws", "timeout_s": 300.0,
                    "step_key": "r1:tests:0:full", "only_files": []}  # fmt: skip
    (finished,) = w.log.of_type(run_id, ev.TestsFinished)
    assert (finished.scope, finished.result["ok"], finished.result["total"]) == ("full", True, 2)
    assert w.log.get_blob(finished.result["logBlob"]) == b"test log\n"
    assert w.toolchain.killed == []

    # recorded_at is ISO UTC from the injected clock; the observer saw everything; artifacts refreshed at the end
    assert {r.recorded_at for r in w.log.load(run_id)} == {iso_utc(T0)} == {"2023-11-14T22:13:20.000000Z"}
    assert w.observed == w.log.load(run_id)
    assert w.refreshed == [(run_id, len(w.log.load(run_id)))], "rendered once, when the drive ended"
    assert_history_folds_to(w.log, run)


def test_dry_run_ends_proposed_and_writes_nothing():
    w = World({"calc.test.js": NODE_TEST}, envelope({"calc.js": NODE_FIXED}))

    run_id, run = w.run(test_command="node --test", dry_run=True)

    assert w.types() == chain("RunRequested", PROPOSE, "StateChanged")
    assert w.log.triggers(run_id) == ["propose", "conclude_dry_run"]
    assert (run.state, run.outcome, run.reason) == (State.PROPOSED, "proposed", "dry_run")
    assert w.log.of_type(run_id, ev.StateChanged)[-1].facts == {"files": ["calc.js"]}
    assert w.workspace.writes == [] and not w.workspace.exists("calc.js")
    assert w.toolchain.calls == []
    # the proposal is still rendered for review
    out = w.render()
    assert json.loads(out["proposal.json"])["files"][0]["content"] == NODE_FIXED
    assert "+  return a + b;" in out["proposal.diff"].decode()
    assert_history_folds_to(w.log, run)


# -- healing -------------------------------------------------------------------------

HEAL_PROJECTS = {
    "node --test": ({"calc.test.js": NODE_TEST}, "calc.js", NODE_BUGGY, NODE_FIXED, NODE_FAILURE),
    "python -m pytest": ({"tests/test_calc.py": PY_TEST}, "calc.py", PY_BUGGY, PY_FIXED, PY_FAILURE),
    "pytest -q": ({"tests/test_calc.py": PY_TEST}, "calc.py", PY_BUGGY, PY_FIXED, PY_FAILURE),
}


@pytest.mark.parametrize("command", list(HEAL_PROJECTS))
def test_heal_reruns_the_failing_files_first_then_the_full_suite(command):
    files, impl, buggy, fixed, fail = HEAL_PROJECTS[command]
    w = World(files, envelope({impl: buggy}), envelope({impl: fixed}),
              tests=[failing(fail), passing(1), passing(2)])  # fmt: skip

    run_id, run = w.run(test_command=command, heal=True)

    assert w.log.triggers(run_id) == ["propose", "apply", "verify", "heal", "verify", "succeed"]
    assert (run.state, run.reason, run.heal_turn) == (State.PASSED, "verification_passed", 1)
    assert w.workspace.text(impl) == fixed

    # turn 1 is a repair call that saw the failure and may touch the failing test and its import
    repair = w.log.of_type(run_id, ev.ModelCallStarted)[1]
    assert (repair.purpose, repair.turn, repair.attempt, repair.key) == ("repair", 1, 1, "r1:model:1")
    assert {fail["file"], impl} <= set(repair.allowed_paths)
    assert fail["name"] in w.model.prompt(1) and buggy in w.model.prompt(1)
    assert w.model.deadlines == [300.0, 180.0]
    context = json.loads(w.log.get_blob(repair.context_blob))
    assert context["failing_paths"][0] == fail["file"]

    # the failing file alone, then the whole suite decides
    starts = w.log.of_type(run_id, ev.TestsStarted)
    assert [(s.turn, s.scope, s.files, s.key) for s in starts] == [
        (0, "full", [], "r1:tests:0:full"),
        (1, "failing", [fail["file"]], "r1:tests:1:failing"),
        (1, "full", [], "r1:tests:1:full"),
    ]
    assert [c["only_files"] for c in w.toolchain.ops("test")] == [[], [fail["file"]], []]
    writes = w.log.of_type(run_id, ev.WritesApplied)
    assert [f["change"] for f in writes[1].files] == ["modified"]
    assert_history_folds_to(w.log, run)


def test_heal_with_npm_test_always_runs_the_full_suite():
    files = {"package.json": PKG_NPM_TEST, "calc.test.js": NODE_TEST}
    w = World(files, envelope({"calc.js": NODE_BUGGY}), envelope({"calc.js": NODE_FIXED}),
              tests=[failing(NODE_FAILURE), passing(2)])  # fmt: skip

    run_id, run = w.run(heal=True)  # npm test is detected from the package.json script

    assert run.state is State.PASSED
    assert [(c["argv"], c["kind"], c["only_files"]) for c in w.toolchain.ops("test")] == [
        (["npm", "test"], "npm", []),
        (["npm", "test"], "npm", []),
    ]
    assert [s.scope for s in w.log.of_type(run_id, ev.TestsStarted)] == ["full", "full"]
    assert_history_folds_to(w.log, run)


def test_heal_without_failing_first_runs_the_full_suite():
    w = World({"calc.test.js": NODE_TEST}, envelope({"calc.js": NODE_BUGGY}), envelope({"calc.js": NODE_FIXED}),
              tests=[failing(NODE_FAILURE), passing(2)])  # fmt: skip

    run_id, run = w.run(test_command="node --test", heal=True, failing_first=False)

    assert run.state is State.PASSED
    assert [s.scope for s in w.log.of_type(run_id, ev.TestsStarted)] == ["full", "full"]


def test_tests_failing_without_heal_end_the_run_failed():
    w = World({"calc.test.js": NODE_TEST}, envelope({"calc.js": NODE_BUGGY}), tests=[failing(NODE_FAILURE)])

    run_id, run = w.run(test_command="node --test")

    assert (run.state, run.reason) == (State.FAILED, "tests_failed")
    assert w.log.of_type(run_id, ev.StateChanged)[-1].facts["failing"] == ["adds two numbers"]
    assert len(w.model.requests) == 1


# -- install -------------------------------------------------------------------------


def test_install_runs_once_and_is_skipped_when_a_repair_changes_no_manifest():
    files = {"package.json": PKG, "calc.test.js": NODE_TEST}
    w = World(files, envelope({"calc.js": NODE_BUGGY}), envelope({"calc.js": NODE_FIXED}),
              tests=[failing(NODE_FAILURE), passing(1), passing(2)], installs=[{}])  # fmt: skip

    run_id, run = w.run(test_command="node --test", heal=True, install=True)

    assert w.types() == chain(
        "RunRequested",
        PROPOSE,
        WRITES,
        "StateChanged",
        "StateChanged",
        INSTALL,
        "StateChanged",
        TESTS,
        "StateChanged",
        "ModelCallStarted",
        "ModelCallCompleted",
        "ProposalAccepted",
        WRITES,
        "InstallSkipped",
        "StateChanged",
        TESTS,
        TESTS,
        "StateChanged",
    )
    assert w.log.triggers(run_id) == ["propose", "apply", "install", "verify", "heal", "verify", "succeed"]
    (install,) = w.toolchain.ops("install")
    assert install == {"op": "install", "commands": [NPM_INSTALL], "cwd": "/ws", "timeout_s": 900.0,
                       "step_key": "r1:install:0"}  # fmt: skip
    (skipped,) = w.log.of_type(run_id, ev.InstallSkipped)
    assert (skipped.turn, skipped.why) == (1, "no dependency manifest changed")
    assert run.turns[1].install is None and run.turns[1].install_skipped == "no dependency manifest changed"
    assert run.state is State.PASSED
    assert_history_folds_to(w.log, run)


def test_install_runs_again_when_a_repair_changes_package_json():
    files = {"package.json": PKG, "calc.test.js": NODE_TEST}
    w = World(files, envelope({"calc.js": NODE_BUGGY}),
              envelope({"calc.js": NODE_FIXED, "package.json": PKG_WITH_DEP}),
              tests=[failing(NODE_FAILURE), passing(1), passing(2)], installs=[{}, {}])  # fmt: skip

    run_id, run = w.run(test_command="node --test", heal=True, install=True)

    assert w.log.triggers(run_id) == ["propose", "apply", "install", "verify", "heal", "install", "verify", "succeed"]
    assert [c["step_key"] for c in w.toolchain.ops("install")] == ["r1:install:0", "r1:install:1"]
    assert w.log.of_type(run_id, ev.InstallSkipped) == []
    reinstall = w.log.of_type(run_id, ev.StateChanged)[5]
    assert (reinstall.from_state, reinstall.facts) == ("healing", {"manifests_changed": ["package.json"]})
    assert [e.turn for e in w.log.of_type(run_id, ev.InstallFinished)] == [0, 1]
    assert run.state is State.PASSED
    assert_history_folds_to(w.log, run)


def test_a_failed_install_fails_the_run_before_any_test():
    w = World({"package.json": PKG}, envelope({"index.js": "module.exports = 1;\n"}),
              installs=[{"ok": False, "stderr": "npm ERR! 404"}])  # fmt: skip

    run_id, run = w.run(test_command="node --test", install=True)

    assert (run.state, run.reason) == (State.FAILED, "install_failed")
    assert w.log.of_type(run_id, ev.StateChanged)[-1].facts["stderrTail"] == "npm ERR! 404"
    assert w.toolchain.ops("test") == []


# -- the model misbehaving -----------------------------------------------------------


def test_an_invalid_envelope_is_retried_once_quoting_the_error_then_fails():
    w = World({"calc.test.js": NODE_TEST}, "Sure! Here is the code.", '{"answer": 42}')

    run_id, run = w.run(test_command="node --test")

    assert w.types() == chain(
        "RunRequested", "StateChanged",
        "ModelCallStarted", "ModelCallCompleted", "ProposalRejected",
        "ModelCallStarted", "ModelCallCompleted", "ProposalRejected",
        "StateChanged",
    )  # fmt: skip
    assert (run.state, run.reason) == (State.FAILED, "invalid_proposal")
    first, second = w.log.of_type(run_id, ev.ProposalRejected)
    assert "no JSON object found" in first.error
    assert [s.attempt for s in w.log.of_type(run_id, ev.ModelCallStarted)] == [1, 2]
    # the retry quotes the first error back; the first request had no such note
    retry_note = w.model.requests[1].messages[-1]
    assert retry_note["role"] == "user" and first.error in retry_note["content"]
    assert "rejected" not in w.model.prompt(0)
    assert w.log.of_type(run_id, ev.StateChanged)[-1].facts == {"errors": [first.error, second.error]}
    assert w.workspace.writes == [] and w.toolchain.calls == []
    assert_history_folds_to(w.log, run)


def test_an_invalid_envelope_then_a_valid_one_goes_on():
    w = World({"calc.test.js": NODE_TEST}, "no idea", envelope({"calc.js": NODE_FIXED}), tests=[passing(2)])

    run_id, run = w.run(test_command="node --test")

    assert run.state is State.PASSED
    assert run.turns[0].rejected and run.turns[0].model_attempts == 2


@pytest.mark.parametrize(
    "kind, state, reason, trigger",
    [
        ("timeout", State.TIMED_OUT, "model_timeout", "time_out"),
        ("unavailable", State.FAILED, "model_unavailable", "fail"),
    ],
)
def test_a_model_error_ends_the_run(kind, state, reason, trigger):
    w = World({"calc.test.js": NODE_TEST}, ModelError(kind, "no reply", duration_ms=300_000))

    run_id, run = w.run(test_command="node --test")

    assert w.types() == chain("RunRequested", "StateChanged", "ModelCallStarted", "ModelCallFailed", "StateChanged")
    (failed,) = w.log.of_type(run_id, ev.ModelCallFailed)
    assert (failed.error, failed.message, failed.duration_ms, failed.key) == (kind, "no reply", 300_000, "r1:model:0")
    assert (run.state, run.reason) == (state, reason)
    assert w.log.triggers(run_id)[-1] == trigger
    assert w.workspace.writes == [] and w.toolchain.calls == []
    assert_history_folds_to(w.log, run)


@pytest.mark.parametrize("bad", ["../escape.js", "/etc/passwd", ".git/config", "src/.KODR/x", "C:/Windows/x.js"])
def test_an_unsafe_path_refuses_the_writes_and_writes_nothing(bad):
    w = World({"calc.test.js": NODE_TEST}, envelope({"calc.js": NODE_FIXED, bad: "pwned"}))

    run_id, run = w.run(test_command="node --test")

    assert w.types() == chain("RunRequested", PROPOSE, "WritesRefused", "StateChanged")
    (refused,) = w.log.of_type(run_id, ev.WritesRefused)
    assert refused.path == bad and refused.why.startswith("refused path")
    assert (run.state, run.reason) == (State.FAILED, "unsafe_write")
    assert w.log.of_type(run_id, ev.StateChanged)[-1].facts == {"refused": [f"{bad}: {refused.why}"]}
    assert w.workspace.writes == []  # not even the safe file
    assert w.toolchain.calls == []
    assert_history_folds_to(w.log, run)


# -- resume ----------------------------------------------------------------------------


def crashed_during_tests() -> World:
    """A run whose process died inside the test step: the log ends with TestsStarted."""
    w = World({"calc.test.js": NODE_TEST}, envelope({"calc.js": NODE_FIXED}), tests=[Crash("killed")])
    run_id = w.engine.request(TASK, RunOptions(test_command="node --test"), run_id="r1")
    with pytest.raises(Crash):
        w.engine.drive(run_id)
    assert w.types()[-1] == "TestsStarted"
    return w


def test_an_interrupted_drive_still_renders_the_artifacts_it_has():
    w = crashed_during_tests()
    assert w.refreshed == [("r1", len(w.log.load("r1")))]


def test_resume_kills_the_orphans_of_the_interrupted_step_and_runs_it_again():
    w = crashed_during_tests()
    w.clock.advance(30)
    toolchain = FakeToolchain(tests=[passing(2)])
    model = FakeModel()  # no model call is needed any more

    run = w.engine_for(toolchain, model).resume("r1", owner="host-2")

    assert toolchain.killed == ["r1:tests:0:full"]
    records = w.log.load("r1")
    assert [r.type for r in records[-5:]] == ["TestsStarted", "RunResumed", "TestsStarted", "TestsFinished",
                                              "StateChanged"]  # fmt: skip
    (resumed,) = w.log.of_type("r1", ev.RunResumed)
    assert (resumed.owner, resumed.interrupted, resumed.overrides) == ("host-2", "r1:tests:0:full", {})
    first, second = w.log.of_type("r1", ev.TestsStarted)
    assert (first.attempt, second.attempt, second.key) == (1, 2, "r1:tests:0:full")
    assert w.log.of_type("r1", ev.TestsFinished)[0].attempt == 2
    assert w.log.of_type("r1", ev.WorkspaceRestored) == []  # the workspace still matched
    assert records[-1].recorded_at == iso_utc(T0 + 30)
    assert (run.state, run.reason, run.resumes, run.pending) == (State.PASSED, "verification_passed", 1, None)
    assert model.requests == []
    assert_history_folds_to(w.log, run)


def test_resume_restores_workspace_files_that_no_longer_match_the_history():
    w = crashed_during_tests()
    w.workspace.data["calc.js"] = b"// edited by hand\n"
    del w.workspace.data["calc.test.js"]
    w.workspace.data["notes.txt"] = b"not in the history: left alone\n"
    toolchain = FakeToolchain(tests=[passing(2)])

    run = w.engine_for(toolchain, FakeModel()).resume("r1", owner="host-2")

    (restored,) = w.log.of_type("r1", ev.WorkspaceRestored)
    assert restored.files == [
        {"path": "calc.js", "sha256": sha(NODE_FIXED), "found": sha("// edited by hand\n")},
        {"path": "calc.test.js", "sha256": sha(NODE_TEST), "found": None},
    ]
    assert w.workspace.text("calc.js") == NODE_FIXED and w.workspace.text("calc.test.js") == NODE_TEST
    assert w.workspace.text("notes.txt") == "not in the history: left alone\n"
    types = w.types()
    assert types.index("RunResumed") < types.index("WorkspaceRestored") < len(types) - 3
    assert run.state is State.PASSED
    assert_history_folds_to(w.log, run)


def test_resume_applies_overrides_and_a_finished_run_is_left_alone():
    w = crashed_during_tests()
    toolchain = FakeToolchain(tests=[passing(2)])
    run = w.engine_for(toolchain, FakeModel()).resume("r1", owner="host-2", overrides={"test_timeout_s": 5.0})
    assert toolchain.ops("test")[0]["timeout_s"] == 5.0
    assert run.options["test_timeout_s"] == 5.0

    seen = len(w.log.load("r1"))
    again = w.engine_for(FakeToolchain(), FakeModel()).resume("r1", owner="host-3")
    assert again == run and len(w.log.load("r1")) == seen  # nothing appended to a terminal run


def test_resume_after_interrupted_writes_applies_them_as_attempt_2():
    class CrashingWorkspace(MemoryWorkspace):
        crash = True

        def write(self, path: str, data: bytes) -> None:
            super().write(path, data)
            if self.crash:
                self.crash = False
                raise Crash("killed mid-write")

    w = World({"calc.test.js": NODE_TEST}, envelope({"calc.js": NODE_FIXED, "util.js": "// util\n"}),
              workspace_class=CrashingWorkspace)  # fmt: skip
    run_id = w.engine.request(TASK, RunOptions(test_command="node --test"), run_id="r1")
    with pytest.raises(Crash):
        w.engine.drive(run_id)
    assert w.types()[-1] == "WritesStarted"

    run = w.engine_for(FakeToolchain(tests=[passing(2)]), FakeModel()).resume("r1", owner="host-2")

    started = w.log.of_type("r1", ev.WritesStarted)
    assert [s.attempt for s in started] == [1, 2]
    (applied,) = w.log.of_type("r1", ev.WritesApplied)
    assert [(f["path"], f["change"]) for f in applied.files] == [("calc.js", "unchanged"), ("util.js", "created")]
    assert w.workspace.text("util.js") == "// util\n"
    assert run.state is State.PASSED
    assert_history_folds_to(w.log, run)


# -- artifacts ---------------------------------------------------------------------------


def test_artifacts_render_install_tests_run_and_repairs_from_the_history():
    files = {"package.json": PKG, "calc.test.js": NODE_TEST}
    w = World(files, envelope({"calc.js": NODE_BUGGY}), envelope({"calc.js": NODE_FIXED}, summary="fix add"),
              tests=[failing(NODE_FAILURE), passing(1), passing(2)], installs=[{}])  # fmt: skip
    run_id, run = w.run(test_command="node --test", heal=True, install=True)

    out = w.render()

    assert set(out) == {
        "install.json", "tests.json", "run.json", "proposal.json", "proposal.diff", "repairs/summary.json",
        *(f"repairs/turn-1/{n}" for n in ("prompt.md", "context.json", "response.json", "writes.json",
                                          "diff.patch", "tests.json", "errors.json")),
    }  # fmt: skip
    install = json.loads(out["install.json"])
    assert (install["ok"], install["commands"], install["command"]) == (True, [NPM_INSTALL], " ".join(NPM_INSTALL))
    tests = json.loads(out["tests.json"])  # the last full-suite result, not the failing-files run
    assert (tests["ok"], tests["passed"], tests["total"], tests["command"]) == (True, 2, 2, "node --test")
    assert tests == w.log.of_type(run_id, ev.TestsFinished)[-1].result

    explained = json.loads(out["run.json"])
    assert (explained["state"], explained["outcome"], explained["reason"]) == (
        "passed",
        "passed",
        "verification_passed",
    )
    assert explained["stop"]["trigger"] == "succeed"
    assert [t["turn"] for t in explained["turns"]] == [0, 1]
    t0, t1 = explained["turns"]
    assert t0["files_changed"] == [{"path": "calc.js", "change": "created"}]
    assert t0["install"].startswith("ran `npm install") and t1["install"] == "skipped: no dependency manifest changed"
    assert (t1["failing_before"], t1["failing_after"]) == (["adds two numbers"], [])
    assert t1["files_changed"] == [{"path": "calc.js", "change": "modified"}]
    assert json.loads(out["repairs/summary.json"]) == explained

    turn1 = "repairs/turn-1/"
    assert "adds two numbers" in out[turn1 + "prompt.md"].decode()
    assert json.loads(out[turn1 + "context.json"])["failing_paths"][0] == "calc.test.js"
    assert json.loads(out[turn1 + "response.json"])["content"] == envelope({"calc.js": NODE_FIXED}, summary="fix add")
    assert json.loads(out[turn1 + "writes.json"]) == [
        {"path": "calc.js", "sha256": sha(NODE_FIXED), "bytes": len(NODE_FIXED), "change": "modified"}
    ]
    diff = out[turn1 + "diff.patch"].decode()
    assert "-  return a - b;" in diff and "+  return a + b;" in diff
    assert json.loads(out[turn1 + "tests.json"])["ok"] is True
    assert json.loads(out[turn1 + "errors.json"]) == []
    assert json.loads(out["proposal.json"])["files"][0]["path"] == "calc.js"


def test_run_json_is_rendered_for_a_run_that_failed_before_any_test():
    w = World({"calc.test.js": NODE_TEST}, ModelError("timeout", "no reply"))
    w.run(test_command="node --test")

    out = w.render()

    assert set(out) == {"run.json"}
    explained = json.loads(out["run.json"])
    assert (explained["state"], explained["reason"]) == ("timed_out", "model_timeout")
    assert explained["turns"][0]["model_error"] == "no reply"


# -- the fakes keep to the ports ---------------------------------------------------------


def test_memory_log_refuses_an_append_at_the_wrong_seq():
    log = MemoryLog()
    first = ev.RunRequested(task=TASK, workspace="/ws")
    assert [r.seq for r in log.append("r", 0, [first, first])] == [1, 2]
    with pytest.raises(ConcurrencyConflict):
        log.append("r", 1, [first])
    with pytest.raises(KeyError):
        log.get_blob(sha("never stored"))
    assert log.put_blob(b"x") == log.put_blob(b"x") == sha("x") and len(log.blobs) == 1


def test_the_fake_results_have_the_keys_of_the_real_ones():
    argv = ["node", "--test"]
    done = ProcessResult(argv=argv, cwd="/ws", exit_code=1, timed_out=False, duration_ms=5, started_at="a",
                         finished_at="b", stdout="", stderr="")  # fmt: skip
    report = TestReport(1, 1, 0, 2, [Failure(name="adds", file="calc.test.js", line=4)], Parser.JUNIT)
    real = build_tests_json(done, report, argv).dump()
    fake = fake_tests_json(argv, **failing(failure("adds", "calc.test.js", 4)))
    assert fake.keys() == real.keys()
    assert {k: fake[k] for k in ("command", "exitCode", "ok", "passed", "failed", "total")} == \
        {k: real[k] for k in ("command", "exitCode", "ok", "passed", "failed", "total")}  # fmt: skip
    assert fake["failures"][0].keys() == real["failures"][0].keys()
    fake_install, real_install = fake_install_json([NPM_INSTALL]), build_install_json([done], [NPM_INSTALL]).dump()
    assert fake_install.keys() == real_install.keys()
    assert fake_install["steps"][0].keys() == real_install["steps"][0].keys()
