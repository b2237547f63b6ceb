"""repair_context.py: siblings, imports, the byte budget, the prompt and context.json."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from kodr_core.failures import failing_paths
from kodr_core.repair_context import (
    MAX_FAILURES_SHOWN,
    MIN_TRUNCATED_BYTES,
    RepairContext,
    build_repair_context,
    imports_of,
    siblings_of,
)
from kodr_core.results import TestResult

TRACES = Path(__file__).parent / "fixtures" / "traces"


def _capture_module():
    spec = importlib.util.spec_from_file_location("kodr_trace_capture", TRACES / "capture.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


PROJECTS = _capture_module().PROJECTS


def reader(contents: dict[str, str | bytes]) -> Callable[[str], bytes | None]:
    def read(path: str) -> bytes | None:
        data = contents.get(path)
        return data.encode() if isinstance(data, str) else data

    return read


# -- siblings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, files, expected",
    [
        ("test/math.test.js", {"src/math.js"}, ["src/math.js"]),
        ("src/sum.test.js", {"src/sum.js"}, ["src/sum.js"]),
        ("src/sum.spec.js", {"src/sum.js"}, ["src/sum.js"]),
        ("slug-test.mjs", {"slug.mjs"}, ["slug.mjs"]),
        ("a_test.cjs", {"a.cjs"}, ["a.cjs"]),
        ("test/test-parse.js", {"src/parse.js"}, ["src/parse.js"]),
        ("src/a.spec.ts", {"src/a.ts"}, ["src/a.ts"]),
        ("src/view.test.tsx", {"src/view.tsx"}, ["src/view.tsx"]),
        ("src/view.test.jsx", {"src/view.jsx"}, ["src/view.jsx"]),
        ("test/a.test.ts", {"src/a.tsx"}, ["src/a.tsx"]),
        ("test/a.test.mjs", {"src/a.js", "src/a.mjs"}, ["src/a.mjs", "src/a.js"]),
        ("test/a.test.js", {"lib/a.js"}, ["lib/a.js"]),
        ("test/a.test.js", {"a.js"}, ["a.js"]),
        ("test/a.test.js", {"a.js", "lib/a.js", "src/a.js"}, ["src/a.js", "lib/a.js"]),
        ("test/widget.test.js", {"src/widget/index.js"}, ["src/widget/index.js"]),
        ("src/__tests__/format.test.js", {"src/format.js"}, ["src/format.js"]),
        ("src/__tests__/format.js", {"src/format.js"}, ["src/format.js"]),
        ("packages/core/test/a.test.js", {"packages/core/src/a.js"}, ["packages/core/src/a.js"]),
        ("test/unit/a.test.js", {"src/unit/a.js"}, ["src/unit/a.js"]),
        ("test/unit/a.test.js", {"src/a.js"}, ["src/a.js"]),
        ("test/a.test.js", {"src/b.js", "other/a.js"}, []),  # no by-name guessing for JS
        ("test/a.test.js", {"test/a.test.js"}, []),
        ("tests/test_x.py", {"x.py"}, ["x.py"]),
        ("tests/test_x.py", {"src/x.py"}, ["src/x.py"]),
        ("tests/test_x.py", {"src/pkg/x.py"}, ["src/pkg/x.py"]),
        ("tests/test_x.py", {"pkg/x.py"}, ["pkg/x.py"]),
        ("tests/test_x.py", {"src/pkg/x.py", "pkg/x.py"}, ["pkg/x.py", "src/pkg/x.py"]),
        ("tests/test_x.py", {"x.py", "src/pkg/x.py"}, ["x.py"]),  # mirrored beats searched
        ("x_test.py", {"x.py"}, ["x.py"]),
        ("tests/test_x.py", {"node_modules/x.py", ".venv/lib/x.py", "tests/test_y.py"}, []),
        ("tests/test_x.py", {"x.js"}, []),
        # implementation -> its tests
        ("src/math.js", {"test/math.test.js"}, ["test/math.test.js"]),
        ("slug.mjs", {"slug-test.mjs"}, ["slug-test.mjs"]),
        (
            "src/sum.js",
            {"src/sum.test.js", "src/__tests__/sum.test.js"},
            ["src/sum.test.js", "src/__tests__/sum.test.js"],
        ),
        ("x.py", {"tests/test_x.py"}, ["tests/test_x.py"]),
        ("src/pkg/x.py", {"tests/test_x.py"}, ["tests/test_x.py"]),
        ("src/widget/index.js", {"test/widget.test.js"}, ["test/widget.test.js"]),
        ("src/a.py", {"test/a.test.js"}, []),
        ("src/util.js", {"other/pkg/test/util.test.js"}, []),
    ],
)
def test_siblings(path: str, files: set[str], expected: list[str]) -> None:
    assert siblings_of(path, files | {path}) == expected


# -- imports -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, text, files, found, missing",
    [
        ("test/a.test.js", "import { x } from '../src/a.js';", {"src/a.js"}, ["src/a.js"], []),
        ("test/a.test.js", "const b = require('./b')", {"test/b.js"}, ["test/b.js"], []),
        ("test/a.test.js", 'const l = require("../lib")', {"lib/index.js"}, ["lib/index.js"], []),
        ("src/x.test.ts", "import { m } from './math'", {"src/math.ts"}, ["src/math.ts"], []),
        ("src/x.test.ts", "import { m } from './math.js'", {"src/math.ts"}, ["src/math.ts"], []),
        ("a.mjs", "const m = await import('./lazy.mjs')", {"lazy.mjs"}, ["lazy.mjs"], []),
        ("a.js", "export * from './c'\nexport { d } from './d.js'", {"c.js", "d.js"}, ["c.js", "d.js"], []),
        ("a.js", "import './side-effect.js'", {"side-effect.js"}, ["side-effect.js"], []),
        ("a.js", "const cfg = require('./cfg.json')", {"cfg.json"}, ["cfg.json"], []),
        ("a.js", "import test from 'node:test'\nimport React from 'react'", set(), [], []),
        ("src/a.js", "import { n } from './nope.js'", set(), [], ["src/nope.js"]),
        ("src/a.cjs", "require('./gone')", set(), [], ["src/gone.cjs"]),
        ("a.js", "require('../../x.js')", {"x.js"}, [], []),  # escapes the workspace
        ("a.js", "import x from './a.js'", {"a.js"}, [], []),  # itself
        ("a.js", "import x from './node_modules/y.js'", {"node_modules/y.js"}, [], []),
        ("pkg/m.py", "from .a import b", {"pkg/a.py"}, ["pkg/a.py"], []),
        ("pkg/m.py", "from . import a", {"pkg/a.py", "pkg/__init__.py"}, ["pkg/__init__.py", "pkg/a.py"], []),
        ("pkg/m.py", "from . import thing", {"pkg/__init__.py"}, ["pkg/__init__.py"], []),
        ("pkg/sub/m.py", "from .. import util", {"pkg/util.py"}, ["pkg/util.py"], []),
        ("pkg/sub/m.py", "from ..util import f", {"pkg/util.py"}, ["pkg/util.py"], []),
        ("tests/test_m.py", "from pkg.a import b", {"src/pkg/a.py"}, ["src/pkg/a.py"], []),
        # the package's __init__ runs first
        ("tests/test_m.py", "from pkg import a", {"pkg/__init__.py", "pkg/a.py"}, ["pkg/__init__.py", "pkg/a.py"], []),
        ("tests/test_m.py", "import helpers", {"tests/helpers.py"}, ["tests/helpers.py"], []),
        ("tests/test_m.py", "import pkg.a as a", {"pkg/a.py"}, ["pkg/a.py"], []),
        ("tests/test_m.py", "import os, json\nfrom pathlib import Path", set(), [], []),
        ("pkg/m.py", "from .missing import x", set(), [], ["pkg/missing.py"]),
        ("pkg/m.py", "from .a import (\n    b,\n    c,\n)\n", {"pkg/a.py"}, ["pkg/a.py"], []),
        # A file that does not parse still has its imports found.
        (
            "pkg/m.py",
            "from .a import (b,\n  c)\nimport pkg.z\ndef f(:\n",
            {"pkg/a.py", "pkg/z.py"},
            ["pkg/a.py", "pkg/z.py"],
            [],
        ),
        ("README.md", "import x from './a.js'", {"a.js"}, [], []),
    ],
)
def test_imports(path: str, text: str, files: set[str], found: list[str], missing: list[str]) -> None:
    assert imports_of(path, text, files | {path}) == (found, missing)


# -- real projects -------------------------------------------------------------------


def project_context(name: str, budget: int = 48_000) -> tuple[RepairContext, dict]:
    side = json.loads((TRACES / f"{name}.json").read_text())
    raw = (TRACES / f"{name}.txt").read_text()
    source = side["derived_from"] or name
    contents = PROJECTS[source]["files"]
    files = set(side["files"])
    paths = failing_paths(TestResult.of(side["tests"]), raw, side["root"], files)
    ctx = build_repair_context(
        TestResult.of(side["tests"]), paths, files, reader(contents), None, budget, workspace_root=side["root"]
    )
    return ctx, side


@pytest.mark.parametrize(
    "name, expected",
    [
        # implementation frames first, then the failing tests, their siblings, their import closure
        ("node-cjs", [("test/math.test.js", "failing"), ("src/math.js", "sibling")]),
        ("node-impl-throw", [("src/parse.js", "failing"), ("test/parse.test.js", "failing")]),
        ("win-node-impl-throw", [("src/parse.js", "failing"), ("test/parse.test.js", "failing")]),
        ("node-tap", [("src/parse.js", "failing"), ("test/parse.test.js", "failing")]),
        ("node-outside", [("src/app.js", "failing"), ("test/app.test.js", "failing")]),
        ("mac-node-outside", [("src/app.js", "failing"), ("test/app.test.js", "failing")]),
        ("node-space", [("lib/greet.js", "failing"), ("test/greet.test.js", "failing")]),
        ("node-esm-space", [("util/strings.mjs", "failing"), ("slug.mjs", "failing"), ("slug-test.mjs", "failing")]),
        ("node-syntax", [("src/broken.js", "failing"), ("test/broken.test.js", "failing")]),
        (
            "jest",
            [
                ("src/format.js", "failing"),
                ("src/__tests__/format.test.js", "failing"),
                ("src/sum.test.js", "failing"),
                ("src/sum.js", "sibling"),
            ],
        ),
        ("vitest", [("src/math.ts", "failing"), ("src/math.test.ts", "failing")]),
        # the package __init__ that `from shop.orders import ...` executes is in the closure
        (
            "pytest-helper",
            [
                ("tests/helpers.py", "failing"),
                ("tests/test_orders.py", "failing"),
                ("src/shop/orders.py", "sibling"),
                ("src/shop/__init__.py", "import"),
            ],
        ),
        # app/service.py is reached as the test's sibling but keeps its failing role
        (
            "pytest-chain",
            [
                ("app/repo.py", "failing"),
                ("app/service.py", "failing"),
                ("tests/test_service.py", "failing"),
                ("app/__init__.py", "import"),
            ],
        ),
        ("pytest-impl", [("calc/ops.py", "failing"), ("tests/test_ops.py", "failing"), ("calc/__init__.py", "import")]),
        ("pytest-native-space", [("test_slug.py", "failing"), ("slug.py", "sibling")]),
    ],
)
def test_real_projects_choose_the_right_files(name: str, expected: list[tuple[str, str]]) -> None:
    ctx, side = project_context(name)
    assert [(f.path, f.role) for f in ctx.files] == expected
    assert ctx.omitted == ()
    assert "src/project/a.js" not in ctx.allowed_paths
    assert ctx.allowed_paths == set(ctx.failing_paths) | {p for p, _ in expected}
    assert all(not f.truncated for f in ctx.files)
    assert ctx.used_bytes == sum(
        len(PROJECTS[side["derived_from"] or name]["files"][f.path].encode()) for f in ctx.files
    )


def test_failing_paths_are_kept_in_relevance_order() -> None:
    ctx, _ = project_context("pytest-chain")
    assert ctx.failing_paths == ("tests/test_service.py", "app/repo.py", "app/service.py")


def test_real_project_prompt_shows_relative_locations() -> None:
    ctx, side = project_context("node-esm-space")
    prompt = ctx.to_prompt()
    assert "at `slug-test.mjs:5`" in prompt
    assert "lower (util/strings.mjs:3:11)" in prompt
    assert side["root"] not in prompt and "%20" not in prompt
    ctx, side = project_context("win-node-impl-throw")
    prompt = ctx.to_prompt()
    assert "parse (src\\parse.js:4:10)" in prompt and "C:\\Users" not in prompt


def test_real_pytest_prompt_keeps_locations_and_errors() -> None:
    ctx, _ = project_context("pytest-helper")
    stack = ctx.failures[0]["stack"]
    assert "tests/helpers.py:3: AssertionError" in stack
    assert any(line.startswith("E ") and "total 7 != 11" in line for line in stack)


# -- the budget ----------------------------------------------------------------------

BIG = "".join(f"export const line{i} = {i};\n" for i in range(400))  # ~11 KB


def synthetic(budget: int, **overrides):
    contents: dict[str, str | bytes] = {
        "test/a.test.js": "import { a } from '../src/a.js';\nimport { h } from './h.js';\n" * 10,
        "src/a.js": BIG,
        "src/b.js": "export const b = 1;\n",
        "test/h.js": "export const h = 2;\n" * 5,
        "src/img.png": b"\x89PNG\x00\x00binary",
    }
    contents.update(overrides)
    files = set(contents) | {"src/gone.js"}
    failing = ["test/a.test.js", "src/b.js", "src/img.png", "src/gone.js"]
    tests = {
        "command": ["node", "--test"],
        "passed": 0,
        "failed": 1,
        "total": 1,
        "failures": [
            {"name": "a", "file": "test/a.test.js", "line": 1, "message": "boom", "stack": "at x (/ws/src/b.js:1:1)"}
        ],
    }
    ctx = build_repair_context(TestResult.of(tests), failing, files, reader(contents), None, budget)
    return ctx, contents


SIZES = {
    "test/a.test.js": 10 * len("import { a } from '../src/a.js';\nimport { h } from './h.js';\n"),
    "src/a.js": len(BIG),
    "src/b.js": 20,
    "test/h.js": 100,
}


@pytest.mark.parametrize("budget", [0, 1, 50, 599, 600, 1023, 1024, 1700, 2000, 5000, 12000, 12_800, 48_000])
def test_budget_is_never_exceeded_and_everything_is_accounted_for(budget: int) -> None:
    ctx, _ = synthetic(budget)
    assert ctx.used_bytes <= budget
    assert ctx.used_bytes == sum(f.bytes for f in ctx.files)
    assert ctx.budget_bytes == budget
    shown = [f.path for f in ctx.files]
    left = [o["path"] for o in ctx.omitted]
    assert len(shown) == len(set(shown)) and not set(shown) & set(left)
    assert set(shown) | set(left) == {
        "test/a.test.js",
        "src/a.js",
        "src/b.js",
        "src/img.png",
        "src/gone.js",
        "test/h.js",
    }
    for f in ctx.files:
        assert len(f.text.encode()) == f.bytes
        assert f.truncated == (f.bytes < f.size)
        if f.truncated:
            assert f.text.endswith("\n") and f.cut in ("head", "excerpt", "failing-tests")


@pytest.mark.parametrize(
    "budget, expected_files, expected_omitted",
    [
        # everything fits: frame, failing test, sibling, import
        (
            48_000,
            [
                ("src/b.js", "failing", False),
                ("test/a.test.js", "failing", False),
                ("src/a.js", "sibling", False),
                ("test/h.js", "import", False),
            ],
            [("src/img.png", "binary"), ("src/gone.js", "unreadable")],
        ),
        # the sibling is cut at a line boundary and fills the budget
        (
            2000,
            [("src/b.js", "failing", False), ("test/a.test.js", "failing", False), ("src/a.js", "sibling", True)],
            [("src/img.png", "binary"), ("src/gone.js", "unreadable"), ("test/h.js", "budget")],
        ),
        # too little room to cut the sibling usefully: omitted, later small files still come in
        (
            SIZES["test/a.test.js"] + 500,
            [("src/b.js", "failing", False), ("test/a.test.js", "failing", False), ("test/h.js", "import", False)],
            [("src/img.png", "binary"), ("src/gone.js", "unreadable"), ("src/a.js", "budget")],
        ),
        # nothing fits
        (
            0,
            [],
            [
                ("src/b.js", "budget"),
                ("src/img.png", "binary"),
                ("src/gone.js", "unreadable"),
                ("test/a.test.js", "budget"),
                ("src/a.js", "budget"),
                ("test/h.js", "budget"),
            ],
        ),
    ],
)
def test_budget_table(budget, expected_files, expected_omitted) -> None:
    ctx, _ = synthetic(budget)
    assert [(f.path, f.role, f.truncated) for f in ctx.files] == expected_files
    assert [(o["path"], o["why"]) for o in ctx.omitted] == expected_omitted


def test_an_import_that_does_not_fit_is_omitted_but_stays_on_target() -> None:
    big_helper = "export const h = 2;\n" * 200  # 4000 bytes
    budget = SIZES["test/a.test.js"] + 20 + MIN_TRUNCATED_BYTES + 30
    ctx, _ = synthetic(budget, **{"test/h.js": big_helper, "src/a.js": "export const a = 1;\n" * 200})
    roles = {f.path: (f.role, f.truncated) for f in ctx.files}
    assert roles["src/a.js"] == ("sibling", True)
    assert "test/h.js" not in roles
    assert {"path": "test/h.js", "role": "import", "why": "budget"} in ctx.omitted
    assert "test/h.js" in ctx.on_target and "test/h.js" in ctx.allowed_paths


def test_missing_failing_path_is_recorded() -> None:
    ctx = build_repair_context(TestResult.of({}), ["a.js"], set(), reader({}), None)
    assert ctx.files == () and ctx.omitted == ({"path": "a.js", "role": "failing", "why": "missing"},)
    assert ctx.allowed_paths == {"a.js"}


def test_failing_file_with_a_missing_relative_import_allows_creating_it() -> None:
    contents = {"test/a.test.js": "const { f } = require('../src/feature');\n"}
    ctx = build_repair_context(TestResult.of({}), ["test/a.test.js"], set(contents), reader(contents), None)
    assert ctx.missing_imports == ("src/feature.js",)
    assert ctx.allowed_paths == {"test/a.test.js", "src/feature.js"}


# -- prompt and json -----------------------------------------------------------------


def test_prompt_has_task_failures_files_and_answer_instruction() -> None:
    contents = {"test/a.test.js": "const x = 1;\n```\nnot a fence end\n", "src/a.js": "module.exports = 1;\n"}
    tests = {
        "command": ["npm", "test"],
        "passed": 2,
        "failed": 1,
        "total": 3,
        "failures": [
            {
                "name": "suite › adds",
                "file": "test/a.test.js",
                "line": 7,
                "message": "AssertionError: 1 !== 2\nmore detail",
                "stack": "    at add (/ws/src/a.js:1:1)\n    at node:internal/x:1:1",
            }
        ],
    }
    ctx = build_repair_context(
        TestResult.of(tests),
        ["test/a.test.js", "src/a.js"],
        set(contents),
        reader(contents),
        "1. fix add\n",
        workspace_root="/ws",
        task="Write add().",
    )
    prompt = ctx.to_prompt(envelope_hint='{"summary": "...", "files": [...]}')
    assert prompt.startswith("## Task\nWrite add().\n")
    assert "`npm test` failed: 1 failed, 2 passed of 3" in prompt
    assert "**suite › adds** at `test/a.test.js:7`" in prompt
    assert "AssertionError: 1 !== 2" in prompt and "more detail" not in prompt
    assert "at add (src/a.js:1:1)" in prompt and "node:internal" not in prompt
    assert "## Plan from an earlier turn\n1. fix add" in prompt
    assert "### `test/a.test.js` (failing)\n````javascript\n" in prompt  # longer fence than ```
    assert "### `src/a.js` (failing)\n```javascript\nmodule.exports = 1;\n```" in prompt
    assert "envelope only" in prompt and "only the files that need to change" in prompt
    assert "can only be changed with `edits`" in prompt
    assert prompt.rstrip().endswith('{"summary": "...", "files": [...]}')


def test_prompt_marks_truncation_and_omissions_and_caps_failures() -> None:
    ctx, _ = synthetic(2000)
    prompt = ctx.to_prompt()
    size = len(BIG)
    assert f"### `src/a.js` (sibling, truncated: first {ctx.files[2].bytes} of {size} bytes)" in prompt
    assert "Not shown: `src/img.png` (binary), `src/gone.js` (unreadable), `test/h.js` (budget)" in prompt
    many = {
        "failed": 130,
        "total": 130,  # the report kept 100 of them
        "failures": [{"name": f"t{i}", "message": "x"} for i in range(100)],
    }
    ctx = build_repair_context(TestResult.of(many), [], set(), reader({}), None)
    assert len(ctx.failures) == MAX_FAILURES_SHOWN
    assert f"({130 - MAX_FAILURES_SHOWN} more failures not shown.)" in ctx.to_prompt()
    assert "## Task" not in ctx.to_prompt()


def test_to_json_is_context_json() -> None:
    ctx, _ = synthetic(2000)
    data = ctx.to_json()
    json.dumps(data)  # serialisable
    assert set(data) == {
        "summary",
        "failures",
        "failing_paths",
        "files",
        "budget_bytes",
        "used_bytes",
        "omitted",
        "missing_imports",
        "allowed_paths",
        "scratchpad",
        "task",
        "onTarget",
        "closure",
        "closureTruncated",
    }
    assert data["files"][2] == {
        "path": "src/a.js",
        "role": "sibling",
        "bytes": ctx.files[2].bytes,
        "size": len(BIG),
        "truncated": True,
        "cut": "head",
    }
    assert data["closure"] == [{"path": "test/h.js", "depth": 1, "via": "import"}]
    assert data["allowed_paths"] == sorted(ctx.allowed_paths)
    assert data["used_bytes"] <= data["budget_bytes"] == 2000
    # an import the budget left out is still on target; failing ones are, shown or not
    assert "test/h.js" in data["allowed_paths"] and "src/b.js" in data["allowed_paths"]
    assert data["onTarget"] == ["test/a.test.js", "src/b.js", "src/img.png", "src/gone.js", "src/a.js", "test/h.js"]


def test_empty_inputs() -> None:
    ctx = build_repair_context(None, [], set(), reader({}), None)
    assert ctx.files == () and ctx.failures == () and ctx.used_bytes == 0
    assert "## Answer" in ctx.to_prompt()
