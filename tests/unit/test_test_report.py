"""Parsers against real captured outputs (see fixtures/outputs/README.md)."""

from pathlib import Path

import pytest

from kodr_core.ports import ProcessResult
from kodr_core.results import Failure
from kodr_core.results import build_install_json as _build_install_json
from kodr_core.results import build_tests_json as _build_tests_json
from kodr_core.runners import (
    TestReport,
    parse_jest_text,
    parse_junit,
    parse_node_text,
    parse_pytest_text,
    parse_vitest_text,
    report_from_outputs,
)


def build_tests_json(*args, **kw) -> dict:
    return _build_tests_json(*args, **kw).dump()


def build_install_json(*args, **kw) -> dict:
    return _build_install_json(*args, **kw).dump()


OUT = Path(__file__).parent / "fixtures" / "outputs"
NODE = "/tmp/kodr-fx/node"


def read(name: str) -> str:
    return (OUT / name).read_text(encoding="utf-8")


def counts(r: TestReport) -> tuple[int, int, int, int]:
    return (r.passed, r.failed, r.skipped, r.total)


def brief(r: TestReport) -> list[tuple[str, str | None, int | None]]:
    return [(f.name, f.file, f.line) for f in r.failures]


# -- node ------------------------------------------------------------------------------

NODE_FAILURES = [
    ("adds wrongly", f"{NODE}/math.test.js", 10),
    ("division > by zero", f"{NODE}/math.test.js", 18),
]


@pytest.mark.parametrize("name", ["node_junit.xml", "npm_node_junit.xml"])
def test_node_junit(name):
    r = parse_junit(read(name))
    assert r.parser == "junit"
    assert counts(r) == (3, 2, 2, 7)  # todo counts as skipped
    assert brief(r) == NODE_FAILURES
    assert r.failures[0].message.startswith("Expected values to be strictly equal")
    assert "math.test.js:10:10" in r.failures[0].stack
    assert r.failures[1].message == "division by zero"
    assert "math.js:2:46" in r.failures[1].stack


@pytest.mark.parametrize("name", ["node_spec.txt", "node_tap.txt", "npm_node_spec.txt"])
def test_node_text(name):
    r = parse_node_text(read(name))
    assert r.parser == "node-text"
    assert counts(r) == (3, 2, 2, 7)
    assert brief(r) == NODE_FAILURES
    assert "4 !== 5" in r.failures[0].message
    assert "division by zero" in r.failures[1].message
    assert "math.js:2:46" in r.failures[1].stack


@pytest.mark.parametrize("name", ["node_no_tests_tap.txt", "node_no_tests_spec.txt"])
def test_node_no_tests(name):
    r = parse_node_text(read(name))
    assert counts(r) == (0, 0, 0, 0)


def test_node_text_without_summary_is_not_node():
    assert parse_node_text(read("pytest_text.txt")) is None
    assert parse_node_text("hello\n") is None


def test_node_load_error_via_junit_takes_location_and_error_from_text():
    r = report_from_outputs(
        "node", read("node_loaderr_spec.txt"), "", read("node_loaderr_junit.xml"), root="/tmp/kodr-fx/node2"
    )
    assert r.parser == "junit"
    assert counts(r) == (1, 2, 0, 3)
    broken, esm = r.failures
    assert (broken.name, broken.file, broken.line) == ("broken.test.js", "broken.test.js", 1)
    assert broken.message == "SyntaxError: Unexpected token ';'"
    assert "const x = ;" in broken.stack
    assert (esm.name, esm.file, esm.line) == ("esm fails", "esm.test.mjs", 3)  # file:// URL made a path


def test_node_load_error_via_tap():
    r = report_from_outputs("node", read("node_loaderr_tap.txt"), "", None, root="/tmp/kodr-fx/node2")
    assert r.parser == "node-text"
    assert brief(r) == [("broken.test.js", "broken.test.js", 1), ("esm fails", "esm.test.mjs", 3)]
    assert r.failures[0].message == "SyntaxError: Unexpected token ';'"


# -- pytest -----------------------------------------------------------------------------

PY_FAILURES = [
    ("test_add_wrong", "tests/test_calc.py", 11),
    ("test_div_zero", "tests/test_calc.py", 15),
    ("test_uses_broken", "tests/test_calc.py", 25),
]


def test_pytest_junit():
    r = parse_junit(read("pytest_junit.xml"))
    assert counts(r) == (2, 3, 2, 7)  # setup error is a failure, xfail a skip
    assert brief(r) == PY_FAILURES
    assert r.failures[0].message.startswith("assert 4 == 5")
    assert "ZeroDivisionError" in r.failures[1].stack and "calc.py:6" in r.failures[1].stack


@pytest.mark.parametrize("name", ["pytest_text.txt", "pytest_quiet.txt"])
def test_pytest_text(name):
    r = parse_pytest_text(read(name))
    assert r.parser == "pytest-text"
    assert counts(r) == (2, 3, 2, 7)
    assert brief(r) == PY_FAILURES
    assert [f.message for f in r.failures] == [
        "assert 4 == 5",
        "ZeroDivisionError: division by zero",
        "RuntimeError: fixture broke",
    ]
    assert "def test_add_wrong" in r.failures[0].stack


def test_pytest_collection_error():
    text = parse_pytest_text(read("pytest_collect_error.txt"))
    junit = parse_junit(read("pytest_collect_error_junit.xml"))
    for r in (text, junit):
        assert counts(r) == (0, 1, 0, 1)
        assert r.failures[0].file == "tests/test_broken.py" and r.failures[0].line == 1
        assert "No module named 'nowhere'" in r.failures[0].message


def test_pytest_no_tests_ran():
    assert counts(parse_pytest_text(read("pytest_no_tests.txt"))) == (0, 0, 0, 0)


def test_pytest_class_names_in_junit():
    xml = (
        read("pytest_junit.xml")
        .replace('name="test_add_wrong"', 'name="test_add_wrong"')
        .replace(
            'classname="tests.test_calc" name="test_add_wrong"',
            'classname="tests.test_calc.TestMath" name="test_add_wrong"',
        )
    )
    assert parse_junit(xml).failures[0].name == "TestMath::test_add_wrong"


# -- jest / vitest ---------------------------------------------------------------------------


def test_jest_text():
    r = parse_jest_text(read("jest_stderr.txt"))
    assert r.parser == "jest-text"
    assert counts(r) == (2, 1, 1, 4)
    assert brief(r) == [("adds wrongly", "sum.test.js", 3)]
    assert r.failures[0].message.startswith("expect(received).toBe(expected)")


def test_vitest_text():
    r = parse_vitest_text(read("vitest_stdout.txt") + read("vitest_stderr.txt"))
    assert r.parser == "vitest-text"
    assert counts(r) == (2, 1, 1, 4)
    assert brief(r) == [("adds wrongly", "sum.test.js", 4)]
    assert r.failures[0].message == "AssertionError: expected 4 to be 5 // Object.is equality"


def test_ansi_is_ignored():
    assert counts(parse_jest_text("\x1b[1mTests:\x1b[22m       \x1b[31m1 failed\x1b[39m, 3 passed, 4 total")) == (
        3,
        1,
        0,
        4,
    )


# -- choosing ------------------------------------------------------------------------------


def test_report_prefers_junit_and_relativises():
    r = report_from_outputs("npm", read("npm_node_spec.txt"), "", read("npm_node_junit.xml"), root=NODE)
    assert r.parser == "junit"
    assert brief(r) == [("adds wrongly", "math.test.js", 10), ("division > by zero", "math.test.js", 18)]


def test_report_falls_back_to_text():
    assert report_from_outputs("npm", "", read("jest_stderr.txt"), None).parser == "jest-text"
    assert report_from_outputs("npm", read("npm_node_spec.txt"), "", "<broken").parser == "node-text"
    assert report_from_outputs("pytest", read("pytest_text.txt"), "", "").parser == "pytest-text"
    assert report_from_outputs("node", "garbage", "", None) is None


def test_junit_refuses_doctype():
    evil = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><testsuites><testcase name="&a;"/></testsuites>'
    assert parse_junit(evil) is None
    assert parse_junit("<html/>") is None


# -- tests.json / install.json ------------------------------------------------------------


def result(exit_code=0, **kw) -> ProcessResult:
    base = dict(
        argv=["npm", "test"], cwd="/w", exit_code=exit_code, timed_out=False, duration_ms=120,
        started_at="2026-01-01T00:00:00.000Z", finished_at="2026-01-01T00:00:00.120Z",
        stdout="out", stderr="err",
    )  # fmt: skip
    base.update(kw)
    return ProcessResult(**base)


TESTS_JSON_KEYS = {
    "command", "argv", "exitCode", "ok", "timedOut", "durationMs", "startedAt", "finishedAt",
    "stdoutTail", "stderrTail", "passed", "failed", "skipped", "total", "failures", "parser", "error",
    "cause", "detail", "scope", "logBlob", "confinement", "deadline",  # why no test told anything; which tests ran; the whole log; the sandbox
}  # fmt: skip


def test_tests_json_ok():
    j = build_tests_json(result(), TestReport(3, 0, 1, 4, [], "junit"), ["npm", "test"])
    assert set(j) == TESTS_JSON_KEYS
    assert j["ok"] is True and j["error"] is None
    assert j["command"] == "npm test" and j["argv"] == ["npm", "test"]
    assert (j["passed"], j["failed"], j["skipped"], j["total"]) == (3, 0, 1, 4)


def test_tests_json_failures():
    f = Failure(name="adds", file="a.test.js", line=3, message="boom", stack="stack")
    j = build_tests_json(result(1), TestReport(1, 1, 0, 2, [f], "junit"), ["node", "--test"])
    assert j["ok"] is False and j["error"] is None
    assert j["failures"] == [{"name": "adds", "file": "a.test.js", "line": 3, "message": "boom", "stack": "stack"}]


def test_tests_json_zero_tests_is_never_ok():
    j = build_tests_json(result(0), TestReport(0, 0, 0, 0, [], "node-text"), ["npm", "test"])
    assert j["ok"] is False and j["error"] == "no tests ran"
    j = build_tests_json(result(0), None, ["npm", "test"])
    assert j["ok"] is False and "no test results" in j["error"] and j["parser"] is None


def test_tests_json_exit_code_without_failures_is_not_ok():
    j = build_tests_json(result(1), TestReport(2, 0, 0, 2, [], "junit"), ["npm", "test"])
    assert j["ok"] is False and "exit code 1" in j["error"]


def test_tests_json_timeout_and_not_found():
    j = build_tests_json(result(None, timed_out=True), None, ["npm", "test"])
    assert j["ok"] is False and j["timedOut"] is True and "timed out" in j["error"]
    j = build_tests_json(result(None, error="executable not found: 'npm'"), None, ["npm", "test"])
    assert j["error"] == "executable not found: 'npm'"


def test_tests_json_tails_are_capped():
    j = build_tests_json(result(0, stdout="x" * 100_000), TestReport(1, 0, 0, 1), ["pytest"])
    assert len(j["stdoutTail"]) <= 16_001


def test_install_json():
    cmds = [["uv", "venv", ".venv"], ["uv", "pip", "install", "-r", "requirements.txt"]]
    ok = build_install_json([result(0, argv=cmds[0]), result(0, argv=cmds[1], stdout="installed")], cmds)
    assert ok["ok"] is True and ok["exitCode"] == 0 and ok["durationMs"] == 240
    assert ok["command"] == "uv venv .venv && uv pip install -r requirements.txt"
    assert ok["stdoutTail"] == "installed" and len(ok["steps"]) == 2 and ok["error"] is None
    assert {"command", "commands", "exitCode", "ok", "timedOut", "durationMs", "startedAt",
            "finishedAt", "stdoutTail", "stderrTail", "steps"} <= set(ok)  # fmt: skip

    failed = build_install_json([result(0, argv=cmds[0]), result(2, argv=cmds[1])], cmds)
    assert failed["ok"] is False and failed["exitCode"] == 2 and failed["steps"][1]["ok"] is False

    stopped = build_install_json([result(None, argv=cmds[0], error="executable not found: 'uv'")], cmds)
    assert stopped["ok"] is False and stopped["error"] == "executable not found: 'uv'"

    assert build_install_json([], cmds)["ok"] is False


NODE_FILE_WITHOUT_TESTS = """<?xml version="1.0" encoding="utf-8"?>
<testsuites>
	<testcase name="/tmp/nt/a.test.js" time="0.088101" classname="test"/>
	<!-- tests 1 -->
	<!-- pass 1 -->
</testsuites>
"""


def test_node_placeholder_for_a_file_without_tests_is_not_a_test():
    # Captured from node 20: a test file that defines no test() is reported as one passing case.
    report = report_from_outputs("node", "ℹ tests 1\nℹ pass 1\n", "", NODE_FILE_WITHOUT_TESTS)
    assert report is not None and (report.total, report.passed) == (0, 0)
