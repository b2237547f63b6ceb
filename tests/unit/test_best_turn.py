"""A run that stops without passing leaves the best turn's files; install-written files are recorded."""

from __future__ import annotations

from kodr_core import events as ev
from kodr_core.aggregate import fold
from kodr_core.states import State
from tests.unit.fakes import envelope, failing, failure, passing, sha
from tests.unit.test_engine import NODE_TEST, PKG, World, assert_history_folds_to

F1 = failure("adds two numbers", "calc.test.js", 4, "x")
F2 = failure("adds zero", "calc.test.js", 5, "y")
BEST = "function add(a, b) { return a + b + (b === 0 ? 1 : 0) }\nmodule.exports = { add }\n"
WORSE = "function add(a, b) { return 0 }\nmodule.exports = { add }\n"
START = "function add(a, b) { return a - b }\nmodule.exports = { add }\n"


def _budget_run(**options):
    w = World({"calc.test.js": NODE_TEST, "calc.js": START},
              envelope({"calc.js": START}), envelope({"calc.js": BEST}), envelope({"calc.js": WORSE, "extra.js": "x\n"}),
              tests=[failing(F1, F2), failing(F2), failing(F1, F2)])  # fmt: skip
    return w, *w.run(test_command="node --test", heal=True, max_turns=2, failing_first=False, **options)


def test_a_run_that_stops_without_passing_restores_the_best_turn_and_records_it():
    w, run_id, run = _budget_run()
    assert (run.state, run.reason) == (State.STALLED, "off_target_edit")  # turn 2 also wrote extra.js
    assert w.workspace.text("calc.js") == BEST  # turn 1 had one failure, turn 2 two
    (restored,) = w.log.of_type(run_id, ev.WorkspaceRestored)
    assert restored.files == [
        {"path": "calc.js", "sha256": sha(BEST), "found": sha(WORSE), "why": "best turn 1"},
        {"path": "extra.js", "sha256": None, "found": sha("x\n"), "why": "best turn 1: created after it, kept"},
    ]
    assert run.manifest["calc.js"] == sha(BEST)  # replay --materialize rebuilds the restored workspace
    assert_history_folds_to(w.log, run)
    again = w.engine.drive(run_id)  # a second drive of the finished run restores nothing more
    assert len(w.log.of_type(run_id, ev.WorkspaceRestored)) == 1 and again == run


def test_keep_last_leaves_the_last_turn():
    w, run_id, run = _budget_run(keep_last=True)
    assert w.workspace.text("calc.js") == WORSE
    assert w.log.of_type(run_id, ev.WorkspaceRestored) == []


def test_a_passing_run_is_never_restored():
    w = World(
        {"calc.test.js": NODE_TEST, "calc.js": START},
        envelope({"calc.js": START}),
        envelope({"calc.js": BEST}),
        tests=[failing(F1), passing(2)],
    )
    run_id, run = w.run(test_command="node --test", heal=True, failing_first=False)
    assert run.state is State.PASSED and w.log.of_type(run_id, ev.WorkspaceRestored) == []


class WritingInstall(World):
    """An install that writes a lockfile into the workspace, as npm does."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        inner = self.toolchain.install

        def install(commands, **kw):
            self.workspace.data["package-lock.json"] = b'{"lockfileVersion": 3}\n'
            return inner(commands, **kw)

        self.toolchain.install = install


def test_files_an_install_writes_are_recorded_with_the_step_and_in_the_manifest():
    w = WritingInstall(
        {"package.json": PKG, "calc.test.js": NODE_TEST}, envelope({"calc.js": BEST}), tests=[passing(2)], installs=[{}]
    )
    run_id, run = w.run(test_command="node --test", install=True)
    assert run.state is State.PASSED
    (done,) = w.log.of_type(run_id, ev.InstallFinished)
    lock = b'{"lockfileVersion": 3}\n'
    assert done.result["written"] == [
        {"path": "package-lock.json", "sha256": sha(lock), "bytes": len(lock), "change": "created", "why": None}
    ]
    assert w.log.get_blob(sha(lock)) == lock
    assert fold(run_id, w.log.load(run_id)).manifest["package-lock.json"] == sha(lock)


def test_resume_rebuilds_the_lockfile_an_install_wrote():
    import pytest

    from kodr_core.options import RunOptions
    from tests.unit.fakes import Crash, FakeModel, FakeToolchain

    w = WritingInstall(
        {"package.json": PKG, "calc.test.js": NODE_TEST},
        envelope({"calc.js": BEST}),
        tests=[Crash("killed")],
        installs=[{}],
    )
    run_id = w.engine.request("t", RunOptions(test_command="node --test", install=True), run_id="r1")
    with pytest.raises(Crash):
        w.engine.drive(run_id)
    lock = w.workspace.data.pop("package-lock.json")  # a fresh machine: the workspace rebuilt from events
    run = w.engine_for(FakeToolchain(tests=[passing(2)]), FakeModel()).resume("r1", owner="host-2")
    assert w.workspace.data["package-lock.json"] == lock
    (restored,) = w.log.of_type("r1", ev.WorkspaceRestored)
    assert {"path": "package-lock.json", "sha256": sha(lock), "found": None} in restored.files
    assert run.state is State.PASSED
