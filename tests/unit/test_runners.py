"""Each runner's reader on real captured output (fixtures/runners, see its README): counts
are tests (not assertions), failures carry the test's full name, file and line, and a run
that told nothing says why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kodr_core.ports import ProcessResult
from kodr_core.results import NoVerificationCause, Parser, build_tests_json
from kodr_core.runners import parse_tape_text, parse_unittest_text, report_from_outputs

RUNNERS = Path(__file__).parent / "fixtures" / "runners"


def captured(name: str) -> tuple[dict, str, str, str | None]:
    meta = json.loads((RUNNERS / f"{name}.meta.json").read_text())
    junit = RUNNERS / f"{name}.junit.xml"
    return (meta, (RUNNERS / f"{name}.stdout").read_text(), (RUNNERS / f"{name}.stderr").read_text(),
            junit.read_text() if junit.exists() else None)  # fmt: skip


def kind_of(meta: dict) -> str:
    return "pytest" if meta["runner"] == "pytest" else "npm"


def result_of(name: str):
    meta, out, err, junit = captured(name)
    report = report_from_outputs(kind_of(meta), out, err, junit, root=meta["root"])
    process = ProcessResult(argv=meta["command"], cwd=meta["root"], exit_code=meta["exitCode"], timed_out=False,
                            duration_ms=10, started_at="a", finished_at="b", stdout=out, stderr=err)  # fmt: skip
    command = ["npm", "test"] if kind_of(meta) == "npm" else ["python", "-m", "pytest"]
    return build_tests_json(process, report, command)


@pytest.mark.parametrize(
    "name, parser, counts, failures",
    [
        # mocha 12, spec reporter: 4 passing, 1 pending, 1 failing (the "no test executed")
        ("mocha-spec", Parser.MOCHA_TEXT, (4, 1, 1, 6), [("calc > subtracts", "test/calc.test.js", 5)]),
        # the implementation throws: the line is the test's frame, the message the TypeError
        ("mocha-throw", Parser.MOCHA_TEXT, (1, 1, 0, 2), [("len > of undefined is 0", "test/calc.test.js", 4)]),
        # mocha dies loading a file with a syntax error: one failure at the broken file's line
        ("mocha-load-error", Parser.MOCHA_TEXT, (0, 1, 0, 1), [("src/calc.js", "src/calc.js", 2)]),
        # tape 5: 7 assertions in 3 tests; 2 failing assertions are 1 failing test
        ("tape", Parser.TAP, (2, 1, 0, 3), [("subtracts", "test/calc.js", 9)]),
        # tape dies in the second test: that test failed with the crash; the third never ran
        ("tape-crash", Parser.TAP, (1, 1, 0, 2), [("len of nothing", "test/calc.js", 8)]),
        ("ava", Parser.AVA_TEXT, (3, 1, 0, 4), [("calc > subtracts", "test/calc.js", 4)]),
        ("ava-throw", Parser.AVA_TEXT, (1, 1, 0, 2), [("len of nothing", "test/calc.js", 3)]),
        ("jest", Parser.JEST_TEXT, (3, 1, 0, 4), [("calc > subtracts", "test/calc.test.js", 4)]),
        ("vitest", Parser.VITEST_TEXT, (3, 1, 0, 4), [("calc > subtracts", "test/calc.test.js", 5)]),
        # node:test whose assertion message quotes another stack: the line is the failing frame (6), not 5
        ("node-stack-in-message", Parser.JUNIT, (0, 1, 0, 1), [("attempt returns no error", "test/run.test.js", 6)]),
        # pytest 9 subtests: each failing subtest is a failed test, named by its parameters
        (
            "pytest-subtests",
            Parser.JUNIT,
            (1, 2, 0, 3),
            [("test_double [x=2]", "test_calc.py", 7), ("test_double [x=3]", "test_calc.py", 7)],
        ),
    ],
)
def test_real_runner_output(name, parser, counts, failures) -> None:
    r = result_of(name)
    assert r.parser is parser
    assert (r.passed, r.failed, r.skipped, r.total) == counts
    assert [(f.name, f.file, f.line) for f in r.failures] == failures
    assert r.ok is False and r.cause is None


@pytest.mark.parametrize(
    "name, needle",
    [
        ("mocha-spec", "7 !== 3"),
        ("mocha-throw", "TypeError: Cannot read properties of undefined"),
        ("mocha-load-error", "SyntaxError: Unexpected end of input"),
        ("tape", "expected 3, actual 7"),
        ("tape-crash", "TypeError: Cannot read properties of undefined"),
        ("ava", "- 7 + 3"),
        ("ava-throw", "TypeError: Cannot read properties of undefined"),
        ("vitest", "expected 7 to be 3"),
    ],
)
def test_failure_messages_say_what_failed(name: str, needle: str) -> None:
    assert needle in result_of(name).failures[0].message


def test_tape_crash_keeps_the_stack_of_the_crash() -> None:
    [f] = result_of("tape-crash").failures
    assert "src/calc.js:3:26" in f.stack and "test/calc.js:8:16" in f.stack


def test_node_messages_read_workspace_paths_relative() -> None:
    [f] = result_of("node-stack-in-message").failures
    assert "/tmp/verdict-runners" not in f.message and "at test/run.test.js:5:37" in f.message


def test_node_spec_alone_also_takes_the_failing_frame() -> None:
    meta, out, err, _ = captured("node-stack-in-message")
    r = report_from_outputs("node", out, err, None, root=meta["root"])
    assert r is not None and [(f.file, f.line) for f in r.failures] == [("test/run.test.js", 6)]


@pytest.mark.parametrize(
    "name, cause, detail",
    [
        ("pytest-missing", NoVerificationCause.RUNNER_MISSING, "pytest not installed in the project environment"),
        (
            "pytest-usage",
            NoVerificationCause.USAGE_ERROR,
            "pytest usage error (exit 4): python -m pytest: error: unrecognized arguments: --no-such-option",
        ),
        ("pytest-none", NoVerificationCause.NO_TESTS, "pytest collected no tests (exit 5)"),
    ],
)
def test_runs_that_tell_nothing_say_why(name: str, cause: NoVerificationCause, detail: str) -> None:
    r = result_of(name)
    assert r.total == 0 and r.ok is False
    assert (r.cause, r.detail) == (cause, detail)


def test_causes_of_js_runs_that_tell_nothing() -> None:
    def run(exit_code, stdout="", stderr="", error=None):
        p = ProcessResult(argv=["npm", "test"], cwd="/ws", exit_code=exit_code, timed_out=False, duration_ms=1,
                          started_at="a", finished_at="b", stdout=stdout, stderr=stderr, error=error)  # fmt: skip
        return build_tests_json(p, report_from_outputs("npm", stdout, stderr, None), ["npm", "test"])

    missing = run(127, stderr="> p@1.0.0 test\n> mocha\n\nsh: 1: mocha: not found\n")
    assert (missing.cause, missing.detail) == (
        NoVerificationCause.RUNNER_MISSING,
        "mocha not installed in the project (sh: 1: mocha: not found)",
    )
    crashed = run(1, stderr="Segmentation fault (core dumped)\n")
    assert crashed.cause is NoVerificationCause.RUNNER_CRASHED and "Segmentation fault" in (crashed.detail or "")
    unreadable = run(0, stdout="all good, trust me\n")
    assert unreadable.cause is NoVerificationCause.OUTPUT_UNREADABLE
    nothing = run(None, error="executable not found: 'npm'")
    assert (nothing.cause, nothing.detail) == (NoVerificationCause.RUNNER_MISSING, "executable not found: 'npm'")
    timed_out = build_tests_json(ProcessResult(argv=["npm", "test"], cwd="/ws", exit_code=None, timed_out=True,
                                 duration_ms=5, started_at="a", finished_at="b", stdout="", stderr=""),
                                 None, ["npm", "test"])  # fmt: skip
    assert timed_out.cause is None  # a timeout is test_timeout, not no_verification


def test_node_tap_is_not_tape() -> None:
    node_tap = "TAP version 13\n# Subtest: a\nok 1 - a\n1..1\n# tests 1\n# suites 0\n# pass 1\n"
    assert parse_tape_text(node_tap) is None


def test_tape_hostile_and_odd_inputs() -> None:
    assert parse_tape_text("TAP version 13\n1..0\n# tests 0\n") is None  # no test header: no tape report
    r = parse_tape_text("TAP version 13\n# a\nok 1 x # SKIP later\n# b\nnot ok 2 y # TODO soon\n1..2\n")
    assert r is not None and (r.passed, r.failed, r.skipped, r.total) == (1, 0, 1, 2)
    r = parse_tape_text("TAP version 13\n# only header\n")  # died without output or stderr
    assert r is not None and (r.failed, r.total) == (1, 1)
    assert r.failures[0].message == "tape exited before the test finished"


def test_unittest_text() -> None:
    text = (
        "F.s\n======================================================================\n"
        "FAIL: test_add (test_calc.CalcTest.test_add)\n"
        "----------------------------------------------------------------------\n"
        "Traceback (most recent call last):\n"
        '  File "/ws/test_calc.py", line 7, in test_add\n    self.assertEqual(add(1, 2), 3)\n'
        "AssertionError: 4 != 3\n\n"
        "----------------------------------------------------------------------\n"
        "Ran 3 tests in 0.001s\n\nFAILED (failures=1, skipped=1)\n"
    )
    r = parse_unittest_text(text)
    assert r is not None and (r.passed, r.failed, r.skipped, r.total) == (1, 1, 1, 3)
    [f] = r.failures
    assert (f.name, f.file, f.line, f.message) == ("test_calc.CalcTest.test_add", "/ws/test_calc.py", 7,
                                                   "AssertionError: 4 != 3")  # fmt: skip
    assert parse_unittest_text("Ran 2 tests in 0.000s\n\nOK\n") is not None
    assert parse_unittest_text("random output\n") is None


def test_a_workspace_under_a_test_like_folder_is_no_evidence_of_a_test_frame() -> None:
    from kodr_core.runners.report import js_location

    stack = ("TypeError: x\n    at exports.len (/tmp/test_x0/ws/src/calc.js:3:26)\n"
             "    at Test.<anonymous> (/tmp/test_x0/ws/test/calc.js:8:16)\n")  # fmt: skip
    assert js_location(stack) == ("/tmp/test_x0/ws/test/calc.js", 8)


def test_pytest_subtests_from_the_text_alone() -> None:
    meta, out, err, _ = captured("pytest-subtests")
    r = report_from_outputs("pytest", out, err, None, root=meta["root"])
    assert r is not None and r.parser is Parser.PYTEST_TEXT
    assert (r.passed, r.failed, r.skipped, r.total) == (1, 2, 0, 3)
    assert [(f.name, f.file, f.line, f.message) for f in r.failures] == [
        ("test_double [x=2]", "test_calc.py", 7, "assert 6 == (2 * 2)"),
        ("test_double [x=3]", "test_calc.py", 7, "assert 9 == (2 * 3)"),
    ]


@pytest.mark.parametrize(
    "name, counts, failing, needle",
    [
        # jest counts no test for a file that cannot run: kodr counts it, at the syntax error
        ("jest-load-error", (1, 1, 0, 2), [("test/calc.test.js", "src/calc.js", 2)], "SyntaxError: Unexpected token"),
        ("vitest-load-error", (1, 1, 0, 2), [("test/calc.test.js", "src/calc.js", 1)], "Failed to parse source"),
        # ava: "Uncaught exception in test/calc.js" before the list; the origin line names src/calc.js:2
        ("ava-load-error", (1, 1, 0, 2), [("test/calc.js", "src/calc.js", 2)], "SyntaxError: Unexpected end of input"),
    ],
)
def test_a_test_file_that_cannot_run_is_a_failure(name, counts, failing, needle) -> None:
    r = result_of(name)
    assert (r.passed, r.failed, r.skipped, r.total) == counts
    assert [(f.name, f.file, f.line) for f in r.failures] == failing
    assert needle in r.failures[0].message and r.ok is False


HOSTILE = {
    "blank run in a tape assertion": "TAP version 13\n# t\nok 1 " + " " * 32_768 + "x\n",
    "blank run in a node TAP failure": "TAP version 13\n# Subtest: a\nnot ok 1 - a" + " " * 32_768 + "x\n# tests 1\n",
    "blank run in a mocha title": "  1 passing (1ms)\n  1 failing\n  1) " + " " * 32_768 + "\n",
    "blank run in an ava line": "  ✔ " + " " * 32_768 + "x\n  1 test passed\n",
    "one endless line": "x" * 65_536,
    "thousands of not-ok lines": "not ok 1 x\n" * 3_000,
    "thousands of load-error headers": "/a/b.js:1\n" * 3_000,
}


@pytest.mark.timeout(30)  # a hang guard (catastrophic backtracking), not a speed target
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_output_never_hangs_a_reader(name: str) -> None:
    from kodr_core.runners import (
        parse_ava_text,
        parse_jest_text,
        parse_mocha_text,
        parse_node_text,
        parse_pytest_text,
        parse_vitest_text,
    )  # fmt: skip

    text = HOSTILE[name]
    for kind in ("npm", "pytest"):
        report_from_outputs(kind, text, text, None)
    for parse in (parse_tape_text, parse_ava_text, parse_node_text, parse_mocha_text, parse_jest_text,
                  parse_vitest_text, parse_pytest_text, parse_unittest_text):  # fmt: skip
        parse(text)


def test_tap_directives_are_read_without_cutting_names_at_hashes() -> None:
    r = parse_tape_text("TAP version 13\n# issue #12\nnot ok 1 handles #12\n# later\nok 2 x # skip soon\n1..2\n")
    assert r is not None and (r.passed, r.failed, r.skipped, r.total) == (0, 1, 1, 2)
    assert r.failures[0].name == "issue #12" and r.failures[0].message.startswith("handles #12")
