"""Real runners end to end: plan_test_run → SubprocessRunner → report_from_outputs → tests.json."""

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from adapters.processes import SubprocessRunner
from kodr_core.results import build_tests_json
from kodr_core.runners import report_from_outputs
from kodr_core.test_command import TestCommand, detect_test_command, parse_test_command, plan_test_run

needs_node = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None, reason="node/npm not on PATH"
)

MATH_TEST = """\
const test = require('node:test');
const assert = require('node:assert');
const { add } = require('./math');

test('adds', () => {
  assert.strictEqual(add(1, 2), 3);
});

test('adds wrongly', () => {
  assert.strictEqual(add(2, 2), 5);
});
"""


def run_tests(root: Path, cmd: TestCommand, only_files=None, script=None, env=None) -> dict:
    junit = root / ".kodr" / "junit.xml"
    junit.parent.mkdir(exist_ok=True)  # node's junit reporter does not create directories
    junit.unlink(missing_ok=True)
    argv, extra = plan_test_run(cmd, str(junit), only_files, script=script)
    result = SubprocessRunner().run(argv, cwd=str(root), timeout_s=120, env={**extra, **(env or {})})
    xml = junit.read_text() if junit.exists() else None
    report = report_from_outputs(cmd.kind, result.stdout, result.stderr, xml, root=str(root))
    return build_tests_json(result, report, cmd.argv).dump()


@pytest.fixture
def node_project(tmp_path):
    (tmp_path / "math.js").write_text("exports.add = (a, b) => a + b;\n")
    (tmp_path / "math.test.js").write_text(MATH_TEST)
    (tmp_path / "package.json").write_text(
        json.dumps({"name": "p", "version": "1.0.0", "scripts": {"test": "node --test"}})
    )
    return tmp_path


def assert_node_result(j: dict, parser: str = "junit") -> None:
    assert j["exitCode"] == 1 and j["ok"] is False and j["error"] is None
    assert (j["passed"], j["failed"], j["skipped"], j["total"]) == (1, 1, 0, 2)
    assert j["parser"] == parser
    [f] = j["failures"]
    assert (f["name"], f["file"], f["line"]) == ("adds wrongly", "math.test.js", 10)
    assert "4 !== 5" in f["message"] + f["stack"]


@needs_node
def test_npm_test_with_junit_through_node_options(node_project):
    j = run_tests(node_project, parse_test_command("npm test"))
    assert_node_result(j)
    assert "✖ adds wrongly" in j["stdoutTail"]  # the spec reporter still reaches stdout
    assert j["command"] == "npm test"


@needs_node
def test_node_test_direct(node_project):
    j = run_tests(node_project, parse_test_command("node --test"))
    assert_node_result(j)


@needs_node
def test_node_test_only_files(node_project):
    (node_project / "other.test.js").write_text("require('node:test')('other', () => {});\n")
    j = run_tests(node_project, parse_test_command("node --test other.test.js"), only_files=["math.test.js"])
    assert j["argv"] == ["node", "--test", "math.test.js"]
    assert_node_result(j)


@needs_node
def test_npm_script_with_own_reporter_falls_back_to_text(node_project):
    script = "node --test --test-reporter=tap"
    pj = {"name": "p", "version": "1.0.0", "scripts": {"test": script}}
    (node_project / "package.json").write_text(json.dumps(pj))
    j = run_tests(node_project, parse_test_command("npm test"), script=script)
    assert_node_result(j, parser="node-text")


@needs_node
def test_npm_script_running_no_tests_is_never_ok(tmp_path):
    pj = {"name": "p", "version": "1.0.0", "scripts": {"test": "echo ok"}}
    (tmp_path / "package.json").write_text(json.dumps(pj))
    cmd = detect_test_command({"package.json"}, pj)
    assert cmd == TestCommand(["npm", "test"], "npm")
    j = run_tests(tmp_path, cmd)
    assert j["exitCode"] == 0
    assert j["ok"] is False and j["total"] == 0
    assert j["error"]


@needs_node
def test_node_test_with_no_test_files_is_never_ok(tmp_path):
    j = run_tests(tmp_path, parse_test_command("node --test"))
    assert j["exitCode"] == 0 and j["total"] == 0 and j["ok"] is False and j["error"] == "no tests ran"


# -- pytest -------------------------------------------------------------------------------

CALC_TEST = """\
from calc import add


def test_add():
    assert add(1, 2) == 3


def test_add_wrong():
    assert add(2, 2) == 5
"""


@pytest.fixture
def py_project(tmp_path):
    (tmp_path / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_calc.py").write_text(CALC_TEST)
    return tmp_path


# No .venv in the project: put the venv running these tests first on PATH, so
# `python -m pytest` is a python that has pytest.
VENV_PATH = {"PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}


def test_pytest_project(py_project):
    cmd = detect_test_command({"calc.py", "tests/test_calc.py"}, None)
    assert cmd == TestCommand(["python", "-m", "pytest"], "pytest")
    j = run_tests(py_project, cmd, env=VENV_PATH)
    assert j["exitCode"] == 1 and j["ok"] is False and j["parser"] == "junit"
    assert (j["passed"], j["failed"], j["skipped"], j["total"]) == (1, 1, 0, 2)
    [f] = j["failures"]
    assert (f["name"], f["file"], f["line"]) == ("test_add_wrong", "tests/test_calc.py", 9)
    assert "assert 4 == 5" in f["message"]
    assert not (py_project / ".pytest_cache").exists()


def test_pytest_project_passing_only_file(py_project):
    (py_project / "tests" / "test_ok.py").write_text("def test_ok():\n    assert True\n")
    j = run_tests(py_project, parse_test_command("python -m pytest tests"), ["tests/test_ok.py"], env=VENV_PATH)
    assert j["ok"] is True and j["total"] == 1 and j["error"] is None


def test_pytest_no_tests_is_never_ok(tmp_path):
    j = run_tests(tmp_path, parse_test_command("python -m pytest"), env=VENV_PATH)
    assert j["exitCode"] == 5 and j["total"] == 0 and j["ok"] is False


# -- the JS runners projects use, from the registry (slow; cached under ~/.cache) ------------------

from adapters.toolchain import ProcessToolchain  # noqa: E402
from tests.unit.fixtures.runners.capture import PROJECTS  # noqa: E402

JS_RUNNERS = {"mocha": "12.0.3", "tape": "5.10.2", "ava": "7.0.0", "jest": "30.5.2", "vitest": "4.1.12"}
JS_CACHE = Path.home() / ".cache" / "kodr-tests" / "js-runners"


@pytest.fixture(scope="module")
def js_runners() -> Path:
    """mocha, tape, ava, jest and vitest at pinned versions, installed once into a cache folder."""
    if not all((JS_CACHE / "node_modules" / name / "package.json").is_file() for name in JS_RUNNERS):
        JS_CACHE.mkdir(parents=True, exist_ok=True)
        (JS_CACHE / "package.json").write_text(json.dumps({"name": "kodr-js-runners", "private": True,
                                                           "devDependencies": JS_RUNNERS}))  # fmt: skip
        done = SubprocessRunner().run(["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts"],
                                      cwd=str(JS_CACHE), timeout_s=600)  # fmt: skip
        assert done.exit_code == 0, done.stderr[-2000:]
    return JS_CACHE / "node_modules"


@needs_node
@pytest.mark.slow
@pytest.mark.parametrize(
    "name, command, counts, failing",
    [
        ("mocha-spec", "npx mocha", (4, 1, 1, 6), [("calc > subtracts", "test/calc.test.js", 5)]),
        ("mocha-spec", "npm test", (4, 1, 1, 6), [("calc > subtracts", "test/calc.test.js", 5)]),
        ("mocha-load-error", "npx mocha", (0, 1, 0, 1), [("src/calc.js", "src/calc.js", 2)]),
        ("tape", "npx tape test/*.js", (2, 1, 0, 3), [("subtracts", "test/calc.js", 9)]),
        ("tape-crash", "npx tape test/*.js", (1, 1, 0, 2), [("len of nothing", "test/calc.js", 8)]),
        ("ava", "npx ava", (3, 1, 0, 4), [("calc > subtracts", "test/calc.js", 4)]),
        ("jest", "npx jest", (3, 1, 0, 4), [("calc > subtracts", "test/calc.test.js", 4)]),
        ("vitest", "npx vitest run", (3, 1, 0, 4), [("calc > subtracts", "test/calc.test.js", 5)]),
    ],
)
def test_js_runner_through_the_toolchain(tmp_path, js_runners, name, command, counts, failing):
    """The command as a user types it, planned and run by kodr (npx --no, NODE_OPTIONS for npm scripts)."""
    project = PROJECTS[name]
    for rel, text in project["files"].items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    if command == "npm test":
        (tmp_path / "package.json").write_text(json.dumps({"name": "p", "scripts": {"test": "mocha"}}))
    (tmp_path / "node_modules").symlink_to(js_runners)
    cmd = parse_test_command(command)
    env_bin = str(js_runners / ".bin")
    os.environ["PATH"] = env_bin + os.pathsep + os.environ["PATH"]  # npm scripts find local bins themselves
    try:
        result, _ = ProcessToolchain().test(cmd.argv, cmd.kind, cwd=str(tmp_path), timeout_s=120, step_key=None)
    finally:
        os.environ["PATH"] = os.environ["PATH"].split(os.pathsep, 1)[1]
    r = result if isinstance(result, dict) else result.dump()
    assert (r["passed"], r["failed"], r["skipped"], r["total"]) == counts, (r["stdoutTail"], r["stderrTail"])
    assert [(f["name"], f["file"], f["line"]) for f in r["failures"]] == failing
    assert r["ok"] is False and r["cause"] is None


@needs_node
def test_npx_never_fetches_a_missing_runner(tmp_path):
    (tmp_path / "test.js").write_text("require('assert').ok(true)\n")
    cmd = parse_test_command("npx mocha")
    result, _ = ProcessToolchain().test(cmd.argv, cmd.kind, cwd=str(tmp_path), timeout_s=120, step_key=None)
    r = result if isinstance(result, dict) else result.dump()
    assert r["argv"][:3] == ["npx", "--no", "mocha"]
    assert (r["ok"], r["total"], r["cause"]) == (False, 0, "runner_missing")
    assert r["detail"].startswith("mocha not installed in the project")
    assert not (tmp_path / "node_modules").exists()


def test_python_unittest_through_the_toolchain(tmp_path):
    (tmp_path / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (tmp_path / "test_calc.py").write_text(
        "import unittest\nfrom calc import add\n\n\nclass CalcTest(unittest.TestCase):\n"
        "    def test_add(self):\n        self.assertEqual(add(1, 2), 3)\n\n"
        "    def test_zero(self):\n        self.assertEqual(add(0, 0), 0)\n\n"
        "    @unittest.skip('later')\n    def test_big(self):\n        pass\n"
    )
    cmd = parse_test_command("python3 -m unittest")
    result, _ = ProcessToolchain().test(cmd.argv, cmd.kind, cwd=str(tmp_path), timeout_s=60, step_key=None)
    r = result.dump()
    assert (r["parser"], r["passed"], r["failed"], r["skipped"], r["total"]) == ("unittest-text", 1, 1, 1, 3)
    [f] = r["failures"]
    assert (f["name"], f["file"], f["line"]) == ("test_calc.CalcTest.test_add", "test_calc.py", 7)
    assert f["message"] == "AssertionError: -1 != 3"


@needs_node
def test_npm_run_of_a_named_script_with_its_own_reporter(node_project):
    """``npm run spec`` is planned from the ``spec`` script (its own --test-reporter: no NODE_OPTIONS)."""
    pj = {
        "name": "p",
        "version": "1.0.0",
        "scripts": {"test": "node --test", "spec": "node --test --test-reporter=tap"},
    }
    (node_project / "package.json").write_text(json.dumps(pj))
    cmd = parse_test_command("npm run spec")
    result, _ = ProcessToolchain().test(cmd.argv, cmd.kind, cwd=str(node_project), timeout_s=120, step_key=None)
    assert_node_result(result.dump(), parser="node-text")


def test_script_name_of_package_manager_commands():
    from kodr_core.test_command import script_name

    names = {c: script_name(parse_test_command(c)) for c in ("npm test", "npm run spec -- --bail", "yarn test",
                                                            "pnpm run test:unit", "npx mocha", "pytest")}  # fmt: skip
    assert names == {"npm test": "test", "npm run spec -- --bail": "spec", "yarn test": "test",
                     "pnpm run test:unit": "test:unit", "npx mocha": None, "pytest": None}  # fmt: skip
