"""results.py: typed test and install results read from stored payloads of any version."""

from __future__ import annotations

import pytest

from kodr_core import events as ev
from kodr_core.aggregate import fold
from kodr_core.errors import StoreUnavailable
from kodr_core.results import InstallResult, NoVerificationCause, Parser, Scope, TestResult

#: A TestsFinished payload as an earlier kodr stored it: no scope/cause/detail, an unknown key.
OLD = {"command": "npm test", "argv": ["npm", "test"], "exitCode": 1, "ok": False, "timedOut": False,
       "durationMs": 120, "startedAt": "a", "finishedAt": "b", "stdoutTail": "", "stderrTail": "",
       "passed": 1, "failed": 1, "skipped": 0, "total": 2, "parser": "junit", "error": None,
       "failures": [{"name": "adds", "file": "calc.test.js", "line": 4, "message": "x", "stack": ""}],
       "logBlob": "ab12", "someFutureKey": 3}  # fmt: skip


def test_an_old_payload_folds_into_the_model() -> None:
    records = [
        ev.RecordedEvent(
            "r",
            1,
            ev.RunRequested(task="t", workspace="/ws", mode="heal", options={}, base_snapshot={}),
            "2025-01-01T00:00:00Z",
        ),  # fmt: skip
        ev.RecordedEvent(
            "r", 2, ev.TestsFinished(turn=0, attempt=1, key="k", scope="full", result=OLD), "2025-01-01T00:00:01Z"
        ),  # fmt: skip
        ev.RecordedEvent(
            "r",
            3,
            ev.InstallFinished(turn=0, attempt=1, key="i", result={"ok": True, "exitCode": 0}),
            "2025-01-01T00:00:02Z",
        ),  # fmt: skip
    ]
    t = fold("r", records).turns[0]
    assert isinstance(t.final_tests, TestResult) and isinstance(t.install, InstallResult)
    r = t.final_tests
    assert (r.exit_code, r.failed, r.total, r.scope, r.parser, r.log_blob) == (
        1,
        1,
        2,
        Scope.FULL,
        Parser.JUNIT,
        "ab12",
    )
    assert r.failures[0].line == 4 and r.cause is None
    assert t.install.ok is True


def test_the_json_shape_is_camel_case_and_round_trips() -> None:
    r = TestResult.of(OLD)
    out = r.dump()
    assert {"exitCode", "timedOut", "durationMs", "stdoutTail", "logBlob", "cause", "detail", "scope"} <= set(out)
    assert "someFutureKey" not in out and "exit_code" not in out
    assert TestResult.of(out) == r
    assert TestResult.of(dict(OLD, cause="runner_missing")).cause is NoVerificationCause.RUNNER_MISSING


def test_odd_but_readable_payloads() -> None:
    assert TestResult.of({"command": ["node", "--test"]}).command == "node --test"  # older fixtures stored argv
    assert TestResult.of({"parser": "some-future-parser"}).parser is None
    assert TestResult.of({}).total == 0 and InstallResult.of({}).ok is False


@pytest.mark.parametrize("payload", [{"total": "many"}, {"failures": "x"}, {"exitCode": [1]}])
def test_a_payload_that_does_not_read_is_a_store_problem_in_one_line(payload) -> None:
    with pytest.raises(StoreUnavailable) as e:
        TestResult.of(payload)
    assert "\n" not in e.value.message and "TestResult does not read" in e.value.message
