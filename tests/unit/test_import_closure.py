"""The repair context holds the code the failing tests execute (issue 9, item 5 and 7)."""

from __future__ import annotations

import json

from kodr_core.import_graph import import_closure
from kodr_core.repair_context import build_repair_context
from kodr_core.results import TestResult
from kodr_core.test_cut import cut_to_failing


def reader(contents):
    return lambda p: contents[p].encode() if p in contents else None


def _closure(contents, starts):
    return list(import_closure(starts, set(contents), reader(contents)).paths)


def test_require_dotdot_follows_package_json_main_and_reexports():
    contents = {
        "package.json": json.dumps({"name": "left-pad-ish", "main": "lib/index.js"}),
        "lib/index.js": "module.exports = require('./pad');\n",
        "lib/pad.js": "const { repeat } = require('./util/repeat')\nmodule.exports = (s) => s;\n",
        "lib/util/repeat.js": "exports.repeat = (s, n) => s;\n",
        "test/a.test.js": "const pad = require('..');\n",
        "test/b.test.js": "const pad = require('../');\n",
    }
    for start in ("test/a.test.js", "test/b.test.js"):
        assert _closure(contents, [start]) == ["lib/index.js", "lib/pad.js", "lib/util/repeat.js"]


def test_exports_conditions_and_self_reference_by_name_reach_dist_and_its_source():
    contents = {
        "package.json": json.dumps(
            {
                "name": "@scope/thing",
                "exports": {
                    ".": {"import": "./dist/index.mjs", "require": "./dist/index.cjs"},
                    "./sub": "./dist/sub.cjs",
                },
            }
        ),
        "dist/index.cjs": "module.exports = 1;\n//# sourceMappingURL=index.cjs.map\n",
        "dist/index.cjs.map": json.dumps({"version": 3, "sources": ["../src/index.ts"], "mappings": ""}),
        "dist/index.mjs": "export default 1;\n",
        "dist/sub.cjs": "module.exports = 2;\n",
        "src/index.ts": "export default 1;\n",
        "test/t.test.js": "const a = require('@scope/thing');\nconst b = require('@scope/thing/sub');\n",
    }
    assert _closure(contents, ["test/t.test.js"]) == [
        "dist/index.mjs",
        "dist/index.cjs",
        "dist/sub.cjs",
        "src/index.ts",
    ]


def test_python_init_chains_to_any_depth_and_conftest():
    contents = {
        "tests/conftest.py": "import pytest\n",
        "tests/test_x.py": "from pkg import thing\n",
        "src/pkg/__init__.py": "from .api import thing\n",
        "src/pkg/api.py": "from pkg.impl.deep import thing\n",
        "src/pkg/impl/__init__.py": "",
        "src/pkg/impl/deep.py": "from . import leaf\nthing = leaf.f\n",
        "src/pkg/impl/leaf.py": "def f(): return 1\n",
    }
    got = _closure(contents, ["tests/test_x.py"])
    assert got[0] == "tests/conftest.py"
    assert set(got) == set(contents) - {"tests/test_x.py"}


BIG_PY_TEST = (
    "import pytest\nfrom calc import add\n\n"
    + "".join(f"def test_ok_{i}():\n    assert add({i}, 0) == {i}\n\n" for i in range(6000))
    + "def test_add_broken():\n    assert add(2, 2) == 4\n"
)


def test_a_huge_test_file_is_cut_to_the_failing_test_and_the_implementation_still_fits():
    impl = "".join(f"def helper_{i}(x):\n    return x\n\n" for i in range(300)) + "def add(a, b):\n    return a - b\n"
    contents = {"tests/test_calc.py": BIG_PY_TEST, "calc/__init__.py": "from .core import add\n", "calc/core.py": impl}
    assert len(BIG_PY_TEST) > 150_000
    tests = {
        "command": ["pytest"],
        "failed": 1,
        "total": 6001,
        "passed": 6000,
        "failures": [
            {"name": "test_add_broken", "file": "tests/test_calc.py", "line": 18004, "message": "assert 0 == 4"}
        ],
    }
    ctx = build_repair_context(
        TestResult.of(tests), ["tests/test_calc.py"], set(contents), reader(contents), None, 48_000
    )
    by = {f.path: f for f in ctx.files}
    test_view = by["tests/test_calc.py"]
    assert test_view.cut == "failing-tests" and "def test_add_broken" in test_view.text
    assert "from calc import add" in test_view.text and "test_ok_5\n" not in test_view.text
    assert "return a - b" in by["calc/core.py"].text  # the bug is in the prompt
    assert {"calc/__init__.py", "calc/core.py"} <= set(ctx.on_target)
    assert ctx.to_json()["files"][0]["cut"] == "failing-tests"


def test_js_test_file_is_cut_with_tree_sitter_to_the_failing_it():
    body = "".join(f"  it('passes number {i}', () => {{ assert.equal(f({i}), {i}) }})\n" for i in range(50))
    text = (
        "const assert = require('assert')\nconst f = require('..')\n\ndescribe('f', () => {\n"
        + body
        + "  it('handles the empty string', () => {\n    assert.equal(f(''), '')\n  })\n})\n"
    )
    cut = cut_to_failing("test/f.test.js", text, ["f handles the empty string"])
    assert cut is not None
    assert "const f = require('..')" in cut and "handles the empty string" in cut
    assert "passes number 3" not in cut and "describe('f', () => {" in cut
    assert "lines 5-54 not shown" in cut


def test_a_large_implementation_is_shown_around_the_failing_line():
    impl = "".join(f"function f{i}(x) {{\n  return x + {i}\n}}\n" for i in range(3000))
    impl_lines = impl.splitlines()
    impl_lines[6000] = "  return BUG"
    impl = "\n".join(impl_lines) + "\n"
    contents = {"test/a.test.js": "const f = require('../src/a.js')\n", "src/a.js": impl}
    tests = {
        "command": ["node", "--test"],
        "failed": 1,
        "total": 1,
        "passed": 0,
        "failures": [
            {
                "name": "t",
                "file": "test/a.test.js",
                "line": 1,
                "message": "x",
                "stack": "    at f2000 (/ws/src/a.js:6001:3)",
            }
        ],
    }
    ctx = build_repair_context(
        TestResult.of(tests),
        ["test/a.test.js", "src/a.js"],
        set(contents),
        reader(contents),
        None,
        8_000,
        workspace_root="/ws",
    )
    view = {f.path: f for f in ctx.files}["src/a.js"]
    assert view.cut == "excerpt" and "return BUG" in view.text and view.bytes <= 8_000
    assert "(failing, excerpt:" in ctx.to_prompt()


def test_a_fix_to_a_closure_file_left_out_by_the_budget_is_not_off_target():
    from kodr_core.brakes import Checkpoint, Situation, TurnRecord, first_brake
    from kodr_core.results import TestResult

    def after(turn: TurnRecord):
        return first_brake(Situation(Checkpoint.VERIFICATION, (TurnRecord(0), turn), max_turns=3))

    impl = "module.exports = (s) => s.trim()\n" * 400  # 13 KB: does not fit the 2 KB budget
    contents = {
        "package.json": json.dumps({"name": "p", "main": "lib/impl.js"}),
        "lib/impl.js": impl,
        "test/t.test.js": "const f = require('..')\n" * 60,
    }
    tests = {
        "command": ["npm", "test"],
        "failed": 1,
        "total": 2,
        "passed": 1,
        "failures": [{"name": "t", "file": "test/t.test.js", "line": 1, "message": "x"}],
    }
    ctx = build_repair_context(TestResult.of(tests), ["test/t.test.js"], set(contents), reader(contents), None, 1_500)
    assert "lib/impl.js" not in {f.path for f in ctx.files}
    assert "lib/impl.js" in ctx.to_json()["onTarget"]
    failing = TestResult.of({"total": 2, "failed": 1, "exitCode": 1, "failures": [{"name": "t"}]})
    turn = TurnRecord(
        n=1,
        manifest_before={"lib/impl.js": "a"},
        manifest_after={"lib/impl.js": "b"},
        written=("lib/impl.js",),
        tests_after=failing,
        allowed=ctx.allowed_paths,
    )
    brake = after(turn)
    assert brake is None  # the engine records ctx.to_json()["allowed_paths"] as the brake's map
    outside = TurnRecord(
        n=1,
        manifest_before={"x.js": "a"},
        manifest_after={"x.js": "b"},
        written=("x.js",),
        tests_after=failing,
        allowed=ctx.allowed_paths,
    )
    assert after(outside).reason.value == "off_target_edit"
