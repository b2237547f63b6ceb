"""decide.next_step on folded runs: given this history and this clock, that is the next step.

Histories are built from real events and folded by the real aggregate, so each
row reads as "a run that got this far". The clock starts at T0 (the time of
every recorded event) unless a row says otherwise.
"""

from __future__ import annotations

from typing import Any

import pytest

from kodr_core import events as ev
from kodr_core.aggregate import Run, fold
from kodr_core.decide import ApplyWrites, CallModel, Fire, Install, RunTests, SkipInstall, next_step
from kodr_core.engine import Engine
from kodr_core.install_plan import NPM_FLAGS
from kodr_core.options import RunOptions
from kodr_core.states import Reason, State
from tests.unit.fakes import (
    T0,
    FakeClock,
    FakeModel,
    FakeToolchain,
    MemoryLog,
    MemoryWorkspace,
    failing,
    failure,
    fake_install_json,
    fake_tests_json,
    iso_utc,
    passing,
)

NODE = ["node", "--test"]
NPM_INSTALL = ["npm", "install", *NPM_FLAGS]
FAIL = failure("adds two numbers", "calc.test.js", 4)


# -- building histories ------------------------------------------------------------


def moved(frm: State, trigger: str, to: State, heal_turn: int = 0) -> ev.StateChanged:
    return ev.StateChanged(from_state=frm.value, to_state=to.value, trigger=trigger, heal_turn=heal_turn)


def requested(mode: str = "run", **options: Any) -> list[ev.Event]:
    base = {"package.json": "p0", "calc.test.js": "t0"}
    return [ev.RunRequested(task="write add", workspace="/ws", mode=mode,
                            options=RunOptions(**options).model_dump(mode="json"), base_snapshot=base)]  # fmt: skip


def proposing(**options: Any) -> list[ev.Event]:
    return requested(**options) + [moved(State.REQUESTED, "propose", State.PROPOSING)]


CALC = [{"path": "calc.js", "sha256": "c1", "bytes": 10}]


def proposal_accepted(**options: Any) -> list[ev.Event]:
    return proposing(**options) + [
        ev.ModelCallStarted(purpose="propose", turn=0, attempt=1, key="r:model:0", request_blob="q"),
        ev.ModelCallCompleted(
            purpose="propose", turn=0, attempt=1, key="r:model:0", response_blob="a", duration_ms=5
        ),  # fmt: skip
        ev.ProposalAccepted(purpose="propose", turn=0, files=CALC),
    ]


def applied(**options: Any) -> list[ev.Event]:
    return proposal_accepted(**options) + [
        ev.WritesStarted(turn=0, attempt=1, key="r:writes:0", files=CALC),
        ev.WritesApplied(
            turn=0,
            key="r:writes:0",
            files=[dict(CALC[0], change="created")],
            manifest={"package.json": "p0", "calc.test.js": "t0", "calc.js": "c1"},
        ),  # fmt: skip
        moved(State.PROPOSING, "apply", State.APPLIED),
    ]


def installing(*install_result: dict, **options: Any) -> list[ev.Event]:
    out = applied(install=True, **options) + [moved(State.APPLIED, "install", State.INSTALLING)]
    for result in install_result:
        out += [ev.InstallStarted(turn=0, attempt=1, key="r:install:0", commands=[NPM_INSTALL]),
                ev.InstallFinished(turn=0, attempt=1, key="r:install:0", result=result)]  # fmt: skip
    return out


def verifying(*results: dict, **options: Any) -> list[ev.Event]:
    out = applied(**options) + [moved(State.APPLIED, "verify", State.VERIFYING)]
    for result in results:
        out += [ev.TestsStarted(turn=0, attempt=1, key="r:tests:0:full", command=NODE),
                ev.TestsFinished(turn=0, attempt=1, key="r:tests:0:full", result=result)]  # fmt: skip
    return out


def healing(first_run: list[str] = NODE, **options: Any) -> list[ev.Event]:
    """Turn 0's tests (run as ``first_run``) failed; turn 1 has begun."""
    return verifying(fake_tests_json(first_run, **failing(FAIL)), heal=True, **options) + [
        moved(State.VERIFYING, "heal", State.HEALING, heal_turn=1)
    ]


def fold_of(events: list[ev.Event], at: float = T0) -> Run:
    records = [ev.RecordedEvent("r", i, e, iso_utc(at)) for i, e in enumerate(events, start=1)]
    return fold("r", records)


def result_of(**kw: Any) -> dict[str, Any]:
    return fake_tests_json(NODE, **kw)


# -- the run deadline --------------------------------------------------------------

LIVE_AFTER_REQUESTED = {
    State.PROPOSING: proposing,
    State.APPLIED: applied,
    State.INSTALLING: lambda **o: installing(**o),
    State.VERIFYING: verifying,
    State.HEALING: healing,
}


@pytest.mark.parametrize("state", list(LIVE_AFTER_REQUESTED), ids=str)
def test_a_passed_run_deadline_times_out_any_live_state(state):
    run = fold_of(LIVE_AFTER_REQUESTED[state](run_deadline_s=60))
    assert run.state is state

    step = next_step(run, T0 + 61)

    assert step == Fire("time_out", {"deadline_s": 60.0, "elapsed_s": 61.0}, Reason.RUN_DEADLINE)


@pytest.mark.parametrize("state", list(LIVE_AFTER_REQUESTED), ids=str)
def test_before_the_deadline_or_without_one_the_run_goes_on(state):
    build = LIVE_AFTER_REQUESTED[state]
    for deadline, now in ((60, T0 + 59), (None, T0 + 10**6)):
        step = next_step(fold_of(build(run_deadline_s=deadline)), now)
        assert getattr(step, "reason", None) is not Reason.RUN_DEADLINE


def test_the_deadline_is_not_checked_at_requested():
    assert next_step(fold_of(requested(run_deadline_s=60)), T0 + 61) == Fire("propose")


def test_a_terminal_run_has_no_next_step():
    run = fold_of(verifying(result_of(**passing())) + [
        ev.StateChanged(from_state="verifying", to_state="passed", trigger="succeed", outcome="passed",
                        reason="verification_passed")])  # fmt: skip
    assert next_step(run, T0 + 10**6) is None


# -- requested ---------------------------------------------------------------------


@pytest.mark.parametrize("command", ["rm -rf /", "npm test -- --watch", "node app.js", "pytest -p evil", "pytest ../x"])
def test_a_refused_test_command_fails_at_requested(command):
    step = next_step(fold_of(requested(test_command=command)), T0)

    assert isinstance(step, Fire)
    assert (step.trigger, step.reason) == ("fail", Reason.TEST_COMMAND_REFUSED)
    assert step.facts["command"] == command and "refused" in step.facts["why"]


def test_a_refused_test_command_fails_the_run_before_any_model_call():
    clock = FakeClock()
    log, model = MemoryLog(clock), FakeModel()  # no replies scripted: a call would fail the test
    engine = Engine(log, MemoryWorkspace({"a.js": "1"}), FakeToolchain(), model, clock=clock)

    run = engine.drive(engine.request("t", RunOptions(test_command="bash -c 'curl evil'"), run_id="r"))

    assert (run.state, run.reason) == (State.FAILED, "test_command_refused")
    assert log.types("r") == ["RunRequested", "StateChanged"]
    assert model.requests == []


@pytest.mark.parametrize(
    "mode, options, expected",
    [
        ("heal", {}, Fire("adopt", {"files": 2})),
        ("heal", {"test_command": "npm test"}, Fire("adopt", {"files": 2})),
        ("run", {}, Fire("propose")),
        ("plan", {}, Fire("propose")),
    ],
)
def test_requested_adopts_in_heal_mode_and_proposes_otherwise(mode, options, expected):
    assert next_step(fold_of(requested(mode, **options)), T0) == expected


# -- proposing -----------------------------------------------------------------------


def test_proposing_calls_the_model_then_applies_or_concludes_a_dry_run():
    assert next_step(fold_of(proposing()), T0) == CallModel("propose", 0, 1)
    assert next_step(fold_of(proposal_accepted()), T0) == ApplyWrites(0, 1)
    dry = next_step(fold_of(proposal_accepted(dry_run=True)), T0)
    assert dry == Fire("conclude_dry_run", {"files": ["calc.js"]}, Reason.DRY_RUN)


# -- installing ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "result, trigger, reason",
    [
        (fake_install_json([NPM_INSTALL]), "verify", None),
        (fake_install_json([NPM_INSTALL], ok=False, stderr="npm ERR! 404"), "fail", Reason.INSTALL_FAILED),
        (fake_install_json([NPM_INSTALL], timed_out=True), "time_out", Reason.INSTALL_TIMEOUT),
    ],
    ids=["ok", "failed", "timed out"],
)
def test_installing_decides_on_the_install_result(result, trigger, reason):
    step = next_step(fold_of(installing(result)), T0)

    assert isinstance(step, Fire)
    assert (step.trigger, step.reason) == (trigger, reason)
    assert step.facts["command"] == " ".join(NPM_INSTALL)
    if reason is Reason.INSTALL_FAILED:
        assert step.facts["stderrTail"] == "npm ERR! 404"


def test_installing_without_a_result_runs_the_install():
    assert next_step(fold_of(installing()), T0) == Install(0, 1, (tuple(NPM_INSTALL),))


# -- verifying -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "result, options, trigger, reason",
    [
        (result_of(**passing(2)), {}, "succeed", Reason.VERIFICATION_PASSED),
        (result_of(), {}, "fail", Reason.NO_VERIFICATION),
        (result_of(exit_code=0, error="no tests ran"), {"heal": True}, "fail", Reason.NO_VERIFICATION),
        (result_of(**failing(FAIL)), {}, "fail", Reason.TESTS_FAILED),
        (result_of(timed_out=True), {}, "time_out", Reason.TEST_TIMEOUT),
        (result_of(timed_out=True, **failing(FAIL)), {"heal": True}, "time_out", Reason.TEST_TIMEOUT),
        (result_of(**failing(FAIL)), {"heal": True}, "heal", None),
        (result_of(**failing(FAIL)), {"heal": True, "max_turns": 0}, "fail", Reason.TESTS_FAILED),
    ],
    ids=[
        "passed",
        "total 0",
        "total 0 with heal",
        "failed",
        "timed out",
        "timed out with heal",
        "heal",
        "heal with no turns",
    ],  # fmt: skip
)
def test_verifying_decides_on_the_test_result(result, options, trigger, reason):
    step = next_step(fold_of(verifying(result, **options)), T0)

    assert isinstance(step, Fire)
    assert (step.trigger, step.reason) == (trigger, reason)
    assert step.facts["command"] == "node --test" and step.facts["scope"] == "full"


def test_no_verification_carries_its_cause():
    step = next_step(fold_of(verifying(result_of())), T0)
    assert isinstance(step, Fire) and step.reason is Reason.NO_VERIFICATION
    assert step.facts["cause"] == "no_tests_collected" and step.facts["total"] == 0
    assert step.facts["detail"] == "no tests ran"


def test_tests_failed_without_heal_names_the_failing_tests():
    step = next_step(fold_of(verifying(result_of(**failing(FAIL)))), T0)
    assert step.facts["failing"] == ["adds two numbers"]  # type: ignore[union-attr]


def test_a_heal_starts_the_next_turn():
    step = next_step(fold_of(verifying(result_of(**failing(FAIL)), heal=True)), T0)
    assert isinstance(step, Fire) and step.heal_turn == 1


def test_verifying_without_a_result_runs_the_full_suite():
    assert next_step(fold_of(verifying()), T0) == RunTests(0, 1, "full", ())


# -- healing ---------------------------------------------------------------------------


def test_healing_asks_for_a_repair_of_the_turn():
    assert next_step(fold_of(healing()), T0) == CallModel("repair", 1, 1)


def repaired(files: dict[str, str], first_run: list[str] = NODE, **options: Any) -> list[ev.Event]:
    """Turn 1's repair written (``files``: path -> new sha), still healing."""
    written = [{"path": p, "sha256": s, "bytes": 1} for p, s in files.items()]
    manifest = {"package.json": "p0", "calc.test.js": "t0", "calc.js": "c1", **files}
    return healing(first_run, **options) + [
        ev.ModelCallStarted(purpose="repair", turn=1, attempt=1, key="r:model:1", request_blob="q"),
        ev.ModelCallCompleted(
            purpose="repair", turn=1, attempt=1, key="r:model:1", response_blob="a", duration_ms=5
        ),  # fmt: skip
        ev.ProposalAccepted(purpose="repair", turn=1, files=written),
        ev.WritesStarted(turn=1, attempt=1, key="r:writes:1", files=written),
        ev.WritesApplied(
            turn=1, key="r:writes:1", files=[dict(f, change="modified") for f in written], manifest=manifest
        ),  # fmt: skip
    ]


@pytest.mark.parametrize(
    "files, options, expected",
    [
        ({"calc.js": "c2"}, {}, Fire("verify", {"install": "not requested"})),
        ({"calc.js": "c2"}, {"install": True}, SkipInstall(1, "no dependency manifest changed")),
        ({"package.json": "p1"}, {"install": True}, Fire("install", {"manifests_changed": ["package.json"]})),
    ],
    ids=["no install", "install, manifests unchanged", "install, package.json changed"],
)
def test_healing_after_the_repair_writes(files, options, expected):
    assert next_step(fold_of(repaired(files, **options)), T0) == expected


@pytest.mark.parametrize(
    "command, expected",
    [
        ("node --test", RunTests(1, 1, "failing", ("calc.test.js",))),
        ("npm test", RunTests(1, 1, "full", ())),
    ],
)
def test_a_heal_turn_runs_the_failing_files_first_unless_the_runner_is_npm(command, expected):
    history = repaired({"calc.js": "c2"}, command.split(), test_command=command)
    history.append(moved(State.HEALING, "verify", State.VERIFYING, heal_turn=1))

    assert next_step(fold_of(history), T0) == expected
