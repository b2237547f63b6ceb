"""The read-only tools and their dispatcher, over an in-memory file set (the core is pure)."""

from __future__ import annotations

import json

import pytest

from kodr_core.tools import MAX_READ_BYTES, TOOL_NAMES, TOOL_SCHEMAS, ToolCache, canonical_arguments, run_tool

FILES = {
    "package.json": b'{"name": "demo"}\n',
    "src/sum.js": b"export function sum(a, b) {\n  return a + b;\n}\n",
    "src/lib/deep.js": b"export const x = 1;\n",
    "src/types.ts": b"export type Id = string;\n",
    "README.md": b"# demo\nline 2\nline 3\nline 4\n",
    "logo.png": b"\x89PNG\r\n\x1a\n\0\0\0binary",
    "empty.txt": b"",
}
IGNORED = {".env": b"SECRET=1\n"}  # on disk, but not in the listing


class Ports:
    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        self.data = dict(FILES if files is None else files)
        self.reads: list[str] = []

    def files(self) -> list[str]:
        return sorted(self.data)

    def read(self, path: str) -> bytes | None:
        self.reads.append(path)
        return {**self.data, **IGNORED}.get(path)

    def symbols(self, path: str, data: bytes) -> list[dict]:
        if path.endswith(".md"):
            raise ValueError("inspect_symbols knows Python, JavaScript and TypeScript, not .md files")
        return [{"name": "sum", "kind": "function", "start_line": 1, "end_line": 3}]

    def run(self, name: str, args) -> str:
        if isinstance(args, dict):
            args = json.dumps(args)
        return run_tool(name, args, files=self.files, read=self.read, symbols=self.symbols)


@pytest.fixture
def ports() -> Ports:
    return Ports()


def test_schemas_are_openai_function_tools():
    assert {t["function"]["name"] for t in TOOL_SCHEMAS} == TOOL_NAMES == {"list_files", "read_file", "inspect_symbols"}
    for tool in TOOL_SCHEMAS:
        assert tool["type"] == "function"
        params = tool["function"]["parameters"]
        assert params["type"] == "object" and params["additionalProperties"] is False
        assert set(params["required"]) <= set(params["properties"])
        assert tool["function"]["description"]
    read = next(t for t in TOOL_SCHEMAS if t["function"]["name"] == "read_file")
    assert read["function"]["parameters"]["required"] == ["path"]


# -- list_files --------------------------------------------------------------------


def test_list_files_all(ports):
    out = ports.run("list_files", {})
    assert out.startswith(f"{len(FILES)} files:")
    assert "src/sum.js" in out and ".env" not in out


@pytest.mark.parametrize(
    "args, expected",
    [
        ({"glob": "*.js"}, ["src/lib/deep.js", "src/sum.js"]),
        ({"glob": "src/**/*.js"}, ["src/lib/deep.js", "src/sum.js"]),
        ({"glob": "*.ts"}, ["src/types.ts"]),
        ({"prefix": "src/lib"}, ["src/lib/deep.js"]),
        ({"prefix": "./src/", "glob": "*.ts"}, ["src/types.ts"]),
    ],
)
def test_list_files_filters(ports, args, expected):
    out = ports.run("list_files", args)
    assert out.splitlines()[1:] == expected


def test_list_files_no_match_and_empty_workspace():
    assert Ports().run("list_files", {"glob": "*.rb"}) == "no files match"
    assert Ports({}).run("list_files", "") == "the workspace has no files yet"


# -- read_file ----------------------------------------------------------------------


def test_read_whole_file(ports):
    out = ports.run("read_file", {"path": "src/sum.js"})
    assert out == "src/sum.js (3 lines)\nexport function sum(a, b) {\n  return a + b;\n}"


def test_read_line_range_accepts_digit_strings(ports):
    out = ports.run("read_file", {"path": "README.md", "start_line": "2", "end_line": 3})
    assert out == "README.md (lines 2-3 of 4)\nline 2\nline 3"
    assert ports.run("read_file", {"path": "README.md", "start_line": 3}).splitlines()[1:] == ["line 3", "line 4"]
    assert ports.run("read_file", {"path": "README.md", "end_line": 99}).startswith("README.md (4 lines)")


def test_read_output_is_capped_at_a_line_boundary():
    big = b"".join(b"line %05d %s\n" % (i, b"x" * 90) for i in range(1, 2001))
    out = Ports({"big.txt": big}).run("read_file", {"path": "big.txt"})
    assert len(out.encode()) < MAX_READ_BYTES + 300
    header, *body, note = [line for line in out.splitlines() if line]
    last = int(body[-1].split()[1])
    assert header == f"big.txt (lines 1-{last} of 2000)"
    assert f"start_line={last + 1}" in note and "truncated" in note


def test_read_binary_and_empty(ports):
    assert ports.run("read_file", {"path": "logo.png"}).startswith("logo.png: binary file")
    assert ports.run("read_file", {"path": "empty.txt"}) == "empty.txt: empty file"


@pytest.mark.parametrize(
    "args, words",
    [
        ({"path": "../outside.txt"}, "escapes the workspace"),
        ({"path": "/etc/passwd"}, "absolute"),
        ({"path": ".git/config"}, "off limits"),
        ({"path": "src\\sum.js"}, "backslashes"),
        ({"path": "nope.js"}, "no file 'nope.js'"),
        ({"path": ".env"}, "ignored"),
        ({}, "missing required argument 'path'"),
        ({"path": 3}, "must be a string"),
        ({"path": "README.md", "start_line": 0}, "whole number >= 1"),
        ({"path": "README.md", "start_line": 3, "end_line": 2}, "before start_line"),
        ({"path": "README.md", "start_line": 9}, "past the end"),
    ],
)
def test_read_file_errors_are_strings_for_the_model(ports, args, words):
    out = ports.run("read_file", args)
    assert out.startswith("error:") and words in out


def test_escaping_and_ignored_paths_are_never_read(ports):
    ports.run("read_file", {"path": "../outside.txt"})
    ports.run("read_file", {"path": ".env"})
    assert ports.reads == []


def test_bad_arguments_and_unknown_tools(ports):
    assert "not valid JSON" in ports.run("read_file", '{"path": ')
    assert "must be a JSON object" in ports.run("read_file", '["a"]')
    out = ports.run("write_file", {"path": "x"})
    assert out.startswith("error: unknown tool 'write_file'") and "read_file" in out


# -- inspect_symbols ----------------------------------------------------------------------


def test_inspect_symbols_returns_json(ports):
    out = json.loads(ports.run("inspect_symbols", {"path": "src/sum.js"}))
    assert out == {
        "path": "src/sum.js",
        "symbols": [{"name": "sum", "kind": "function", "start_line": 1, "end_line": 3}],
    }


def test_inspect_symbols_reports_value_errors(ports):
    out = ports.run("inspect_symbols", {"path": "README.md"})
    assert out.startswith("error:") and ".md" in out
    assert ports.run("inspect_symbols", {"path": "../x.py"}).startswith("error:")


# -- the cache --------------------------------------------------------------------------


def test_canonical_arguments_ignore_order_and_spacing():
    assert canonical_arguments('{"b": 1, "a": "x"}') == canonical_arguments({"a": "x", "b": 1}) == '{"a":"x","b":1}'
    assert canonical_arguments("") == "{}"
    assert canonical_arguments("{oops") == "{oops"


def test_cache_answers_identical_calls_without_running_them(ports):
    cache = ToolCache()
    kw = dict(files=ports.files, read=ports.read, symbols=ports.symbols)
    first, hit1 = cache.call("read_file", '{"path": "src/sum.js"}', step=1, **kw)
    second, hit2 = cache.call("read_file", '{ "path":"src/sum.js" }', step=3, **kw)
    assert (hit1, hit2) == (False, True)
    assert ports.reads == ["src/sum.js"]
    assert second.startswith("[cached: you already made this exact call at step 1") and second.endswith(first)
    _, hit3 = cache.call("read_file", '{"path": "src/sum.js", "start_line": 2}', step=3, **kw)
    assert hit3 is False and ports.reads == ["src/sum.js", "src/sum.js"]


def test_cache_points_back_instead_of_repeating_big_results():
    big = b"x" * 100 + b"\n"
    p = Ports({"big.txt": big * 100})
    cache = ToolCache()
    kw = dict(files=p.files, read=p.read, symbols=p.symbols)
    cache.call("read_file", '{"path": "big.txt"}', step=1, **kw)
    again, hit = cache.call("read_file", '{"path": "big.txt"}', step=2, **kw)
    assert hit and len(again) < 300 and "shown above" in again
