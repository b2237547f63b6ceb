"""failures.py against real captured traces (tests/unit/fixtures/traces) and edge spellings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kodr_core.failures import (
    failing_paths,
    failures_from,
    is_test_path,
    normalise_path,
    short_stack,
)
from kodr_core.results import TestResult

TRACES = Path(__file__).parent / "fixtures" / "traces"


def load(name: str) -> tuple[dict, str]:
    side = json.loads((TRACES / f"{name}.json").read_text())
    return side, (TRACES / f"{name}.txt").read_text()


# fixture -> (from tests.json and raw output, from tests.json alone)
FIXTURES: dict[str, tuple[list[str], list[str]]] = {
    "node-cjs": (["test/math.test.js"], ["test/math.test.js"]),
    "node-impl-throw": (["test/parse.test.js", "src/parse.js"],) * 2,
    "win-node-impl-throw": (["test/parse.test.js", "src/parse.js"],) * 2,
    "node-tap": (["test/parse.test.js", "src/parse.js"],) * 2,
    "node-outside": (["test/app.test.js", "src/app.js"],) * 2,
    "mac-node-outside": (["test/app.test.js", "src/app.js"],) * 2,
    "node-space": (["test/greet.test.js", "lib/greet.js"],) * 2,
    "node-esm-space": (["slug-test.mjs", "util/strings.mjs", "slug.mjs"],) * 2,
    "win-node-esm-space": (["slug-test.mjs", "util/strings.mjs", "slug.mjs"],) * 2,
    # The syntax error's location is only in the raw output (stderr of the child).
    "node-syntax": (["test/broken.test.js", "src/broken.js"], ["test/broken.test.js"]),
    "jest": (["src/__tests__/format.test.js", "src/sum.test.js", "src/format.js"],) * 2,
    "vitest": (["src/math.test.ts", "src/math.ts"],) * 2,
    "pytest-helper": (["tests/test_orders.py", "tests/helpers.py"],) * 2,
    "win-pytest-helper": (["tests/test_orders.py", "tests/helpers.py"],) * 2,
    # Innermost implementation frame first, as in a JS stack.
    "pytest-chain": (["tests/test_service.py", "app/repo.py", "app/service.py"],) * 2,
    "pytest-impl": (["tests/test_ops.py", "calc/ops.py"],) * 2,
    "pytest-native-space": (["test_slug.py"],) * 2,
    "mac-pytest-native-space": (["test_slug.py"],) * 2,
}


def test_every_fixture_is_in_the_table() -> None:
    names = {p.stem for p in TRACES.glob("*.json")}
    assert names == set(FIXTURES)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_real_traces(name: str) -> None:
    side, raw = load(name)
    files = set(side["files"])
    both, json_only = FIXTURES[name]
    assert failing_paths(TestResult.of(side["tests"]), raw, side["root"], files) == both
    assert failing_paths(TestResult.of(side["tests"]), "", side["root"], files) == json_only
    assert failing_paths(None, raw, side["root"], files) == both  # the raw output alone


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_real_traces_only_name_existing_workspace_files(name: str) -> None:
    side, raw = load(name)
    got = failing_paths(TestResult.of(side["tests"]), raw, side["root"], set(side["files"]))
    assert set(got) <= set(side["files"])
    assert len(got) == len(set(got))
    assert not any("node_modules" in p for p in got)


@pytest.mark.parametrize("name", ["node-outside", "mac-node-outside"])
def test_frame_outside_the_workspace_is_never_a_suffix_guess(name: str) -> None:
    side, raw = load(name)
    assert "src/project/a.js" in side["files"]  # the trap is there …
    assert "vendor/src/project/a.js" in raw
    got = failing_paths(TestResult.of(side["tests"]), raw, side["root"], set(side["files"]))
    assert "src/project/a.js" not in got  # … and not taken


def test_real_trace_against_a_parent_root_finds_nothing_absolute() -> None:
    side, raw = load("node-impl-throw")
    parent = str(Path(side["root"]).parent)
    # Under the parent, the absolute frames are "node-impl-throw/src/parse.js", which
    # is not in the list we pass: nothing may be guessed.
    got = failing_paths(None, raw, parent, set(side["files"]))
    assert "src/parse.js" not in got


@pytest.mark.parametrize(
    "raw, root, existing, expected",
    [
        ("/ws/src/a.js", "/ws", {"src/a.js"}, "src/a.js"),
        ("/ws/src/a.js", "/ws/", {"src/a.js"}, "src/a.js"),
        ("./src/a.js", "/ws", {"src/a.js"}, "src/a.js"),
        ("src/a.js", "/ws", {"src/a.js"}, "src/a.js"),
        ("'/ws/src/a.js'", "/ws", {"src/a.js"}, "src/a.js"),
        ("/ws/src/missing.js", "/ws", {"src/a.js"}, None),
        ("/ws/src/missing.js", "/ws", None, "src/missing.js"),
        ("/ws2/src/a.js", "/ws", {"src/a.js"}, None),
        ("/ws/../etc/passwd", "/ws", None, None),
        ("../outside.js", "/ws", None, None),
        ("/ws/node_modules/x/index.js", "/ws", {"node_modules/x/index.js"}, None),
        ("/ws/.venv/lib/python3.11/site-packages/x.py", "/ws", None, None),
        ("node:internal/test_runner/test", "/ws", None, None),
        ("node:async_hooks", "/ws", None, None),
        ("webpack://app/src/a.js", "/ws", {"src/a.js"}, None),
        # file:// URLs, percent-decoded
        ("file:///ws/my%20dir/a.mjs", "/ws", {"my dir/a.mjs"}, "my dir/a.mjs"),
        ("file://localhost/ws/a.mjs", "/ws", {"a.mjs"}, "a.mjs"),
        ("file:///elsewhere/a.mjs", "/ws", {"a.mjs"}, None),
        # macOS and Linux absolute paths outside the workspace, and a suffix that exists
        ("/Users/me/src/project/a.js", "/Users/me/work/app", {"src/project/a.js"}, None),
        ("/home/me/src/project/a.js", "/home/me/app", {"src/project/a.js"}, None),
        ("/Users/me/work/app/src/project/a.js", "/Users/me/work/app", {"src/project/a.js"}, "src/project/a.js"),
        ("/private/var/folders/x/T/ws/a.js", "/var/folders/x/T/ws", {"a.js"}, "a.js"),
        # Windows
        (r"C:\Users\me\proj\src\a.js", r"C:\Users\me\proj", {"src/a.js"}, "src/a.js"),
        (r"c:\users\ME\proj\SRC\a.js", r"C:\Users\me\proj", {"src/a.js"}, "src/a.js"),
        ("C:/Users/me/proj/src/a.js", r"C:\Users\me\proj", {"src/a.js"}, "src/a.js"),
        (r"C:\Users\me\proj\my dir\a.js", "C:\\Users\\me\\proj\\", {"my dir/a.js"}, "my dir/a.js"),
        ("file:///C:/Users/me/my%20proj/a.mjs", r"C:\Users\me\my proj", {"a.mjs"}, "a.mjs"),
        (r"C:\Users\me\projX\a.js", r"C:\Users\me\proj", {"a.js"}, None),
        (r"D:\other\a.js", r"C:\Users\me\proj", {"a.js"}, None),
        (r"tests\test_x.py", r"C:\proj", {"tests/test_x.py"}, "tests/test_x.py"),
        (r"\\server\share\proj\a.js", r"\\server\share\proj", {"a.js"}, "a.js"),
        ("file://server/share/proj/a%20b.js", r"\\server\share\proj", {"a b.js"}, "a b.js"),
        ("/home/me/proj/a.js", r"C:\proj", {"a.js"}, None),
        (r"C:\proj\a.js", "/home/me/proj", {"a.js"}, None),
    ],
)
def test_normalise_path(raw: str, root: str, existing: set[str] | None, expected: str | None) -> None:
    assert normalise_path(raw, root, existing) == expected


ESM_ROOT = "/ws/my app"


@pytest.mark.parametrize(
    "label, tests_json, raw, root, existing, expected",
    [
        (
            "design example: /Users/me/src/project/a.js is outside /Users/me/work/app",
            None,
            "Error: boom\n    at load (/Users/me/src/project/a.js:3:9)\n"
            "    at Object.<anonymous> (/Users/me/work/app/test/a.test.js:5:3)\n",
            "/Users/me/work/app",
            {"src/project/a.js", "test/a.test.js"},
            ["test/a.test.js"],
        ),
        (
            "tests.json file as a file:// URL, stack without 'at' (node TAP)",
            {
                "failures": [
                    {
                        "name": "t",
                        "file": "file:///ws/my%20app/x.test.mjs",
                        "line": 3,
                        "message": "boom",
                        "stack": "lower (file:///ws/my%20app/lib/x.mjs:3:9)\nnode:internal/process/task_queues:140:7",
                    }
                ]
            },
            "",
            ESM_ROOT,
            {"x.test.mjs", "lib/x.mjs"},
            ["x.test.mjs", "lib/x.mjs"],
        ),
        (
            "jest on Windows prints relative frames with backslashes",
            None,
            "FAIL src\\sum.test.js\n  ● sum › adds\n\n      at Object.toBe (src\\sum.test.js:5:23)\n"
            "      at helper (src\\util\\add.js:2:9)\n",
            r"C:\proj",
            {"src/sum.test.js", "src/util/add.js"},
            ["src/sum.test.js", "src/util/add.js"],
        ),
        (
            "ANSI colours are ignored",
            None,
            "\x1b[1m\x1b[31m FAIL \x1b[39m\x1b[22m src/a.test.ts\x1b[2m > \x1b[22ma\n \x1b[36m❯\x1b[39m src/a.ts:3:9\n",
            "/ws",
            {"src/a.test.ts", "src/a.ts"},
            ["src/a.test.ts", "src/a.ts"],
        ),
        (
            "a native Python traceback is innermost first",
            None,
            'Traceback (most recent call last):\n  File "/ws/tests/test_a.py", line 3, in test_a\n'
            '  File "/ws/pkg/service.py", line 9, in run\n  File "/ws/pkg/repo.py", line 2, in find\n'
            "KeyError: 1\n",
            "/ws",
            {"tests/test_a.py", "pkg/service.py", "pkg/repo.py"},
            ["tests/test_a.py", "pkg/repo.py", "pkg/service.py"],
        ),
        (
            "compiler-style locations (tsc)",
            None,
            "src/a.ts:3:9 - error TS2322: Type 'string' is not assignable to type 'number'.\n",
            "/ws",
            {"src/a.ts"},
            ["src/a.ts"],
        ),
        (
            "pytest ERROR line for a module that fails to import",
            None,
            "ERROR tests/test_a.py - ModuleNotFoundError: No module named 'pkg'\n",
            "/ws",
            {"tests/test_a.py"},
            ["tests/test_a.py"],
        ),
        (
            "a test named by a runner comes before frames even if seen later",
            None,
            "    at run (/ws/src/run.js:1:1)\n"
            "    at Object.<anonymous> (/ws/test/helpers.js:4:2)\n"
            "test at test/run.test.js:1:1\n",
            "/ws",
            {"src/run.js", "test/helpers.js", "test/run.test.js"},
            ["test/run.test.js", "src/run.js", "test/helpers.js"],
        ),
        ("nothing at all", None, "", "/ws", {"a.js"}, []),
        ("no failures key", {"failed": 1}, "random text: 1:2", "/ws", {"a.js"}, []),
    ],
)
def test_failing_paths_edge_spellings(label, tests_json, raw, root, existing, expected) -> None:
    tests = None if tests_json is None else TestResult.of(tests_json)
    assert failing_paths(tests, raw, root, existing) == expected, label


@pytest.mark.parametrize(
    "path, expected",
    [
        ("test/a.test.js", True),
        ("src/a.spec.ts", True),
        ("slug-test.mjs", True),
        ("a_test.cjs", True),
        ("src/__tests__/format.js", True),
        ("tests/test_orders.py", True),
        ("pkg/orders_test.py", True),
        ("tests/helpers.py", False),
        ("test/helpers.js", False),
        ("src/testing.js", False),
        ("src/contest.py", False),
        ("src/latest.js", False),
    ],
)
def test_is_test_path(path: str, expected: bool) -> None:
    assert is_test_path(path) is expected


def test_failures_from_is_compact_and_relative_inside_the_workspace() -> None:
    side, _ = load("jest")
    got = failures_from(TestResult.of(side["tests"]), side["root"], set(side["files"]))
    assert got == [
        {
            "name": "formats undefined as zero",
            "file": "src/__tests__/format.test.js",
            "line": 3,
            "message": "TypeError: Cannot read properties of undefined (reading 'toFixed')",
        },
        {
            "name": "sum adds",
            "file": "src/sum.test.js",
            "line": 4,
            "message": "Error: expect(received).toBe(expected) // Object.is equality",
        },
    ]


@pytest.mark.parametrize(
    "failure, root, expected",
    [
        (
            {"name": "t", "file": "/elsewhere/a.js", "line": 1, "message": "\n\n  boom  \nmore"},
            "/ws",
            {"name": "t", "file": "/elsewhere/a.js", "line": 1, "message": "boom"},
        ),
        (
            {"name": "", "file": "/ws/a.js", "message": "", "stack": "Error: from stack\n at x"},
            "/ws",
            {"name": "", "file": "a.js", "line": None, "message": "Error: from stack"},
        ),
        (
            {"name": "t", "file": "/ws/a.js", "message": "x" * 500},
            None,
            {"name": "t", "file": "/ws/a.js", "line": None, "message": "x" * 299 + "…"},
        ),
    ],
)
def test_failures_from_table(failure: dict, root: str | None, expected: dict) -> None:
    assert failures_from(TestResult.of({"failures": [failure]}), root) == [expected]


def test_failures_from_empty() -> None:
    assert failures_from(None) == [] and failures_from(TestResult.of({})) == []


def test_short_stack_drops_runtime_and_dependency_frames() -> None:
    side, _ = load("jest")
    stack = side["tests"]["failures"][0]["stack"]
    assert short_stack(stack) == [
        "at toFixed (/tmp/kodr-trace-capture/jest-app/src/format.js:2:16)",
        "    at Object.money (/tmp/kodr-trace-capture/jest-app/src/__tests__/format.test.js:4:10)",
    ]
    assert short_stack(None) == []
    assert len(short_stack("\n".join(f"at f{i} (/ws/a.js:{i}:1)" for i in range(20)), 5)) == 5


@pytest.mark.parametrize(
    "name, index, expected",
    [
        # native traceback: pytest's own frames are dropped, the innermost frame and error stay
        (
            "pytest-native-space",
            0,
            [
                '  File "test_slug.py", line 5, in test_slugify_uses_dashes',
                "    assert slugify(' Hello World ') == 'hello-world'",
                "AssertionError: assert 'hello_world' == 'hello-world'",
                "  - hello-world",
                "  ?      ^",
                "  + hello_world",
                "  ?      ^",
            ],
        ),
        # pytest --tb=short: locations and E lines
        (
            "pytest-impl",
            0,
            [
                "tests/test_ops.py:5: in test_mean_of_nothing_is_zero",
                "calc/ops.py:5: in mean",
                "E   ZeroDivisionError: division by zero",
            ],
        ),
        # pytest long: the failing source lines too
        (
            "pytest-helper",
            0,
            [
                ">       assert_total(Order([(2, 3), (5, 1)]), 11)",
                "tests/test_orders.py:6:",
                ">       assert got == expected, f'total {got} != {expected}'",
                "E       AssertionError: total 7 != 11",
                "tests/helpers.py:3: AssertionError",
            ],
        ),
        # node TAP stack (no "at"), relative to the workspace
        (
            "node-impl-throw",
            0,
            [
                "src/parse.js:4:59",
                "parse (src/parse.js:4:10)",
                "TestContext.<anonymous> (test/parse.test.js:6:26)",
            ],
        ),
        (
            "win-node-esm-space",
            0,
            [
                "lower (util/strings.mjs:3:11)",
                "slug (slug.mjs:4:10)",
                "TestContext.<anonymous> (slug-test.mjs:6:16)",
            ],
        ),
    ],
)
def test_short_stack_of_real_traces(name: str, index: int, expected: list[str]) -> None:
    side, _ = load(name)
    stack = side["tests"]["failures"][index]["stack"]
    assert short_stack(stack, 8, side["root"]) == expected


def test_short_stack_keeps_only_frames_when_a_js_stack_has_them() -> None:
    junit_style = (
        "Error [ERR_TEST_FAILURE]: Expected values to be strictly equal:\n0 !== 4\n"
        "    at TestContext.<anonymous> (/ws/test/a.test.js:4:29)\n"
        "    at Test.runInAsyncScope (node:async_hooks:206:9) {\n  code: 'ERR_TEST_FAILURE',\n}"
    )
    assert short_stack(junit_style, 8, "/ws") == ["    at TestContext.<anonymous> (test/a.test.js:4:29)"]
    assert short_stack("Error: boom\n  no frames here", 8) == ["Error: boom", "  no frames here"]
