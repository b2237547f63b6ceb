"""Symbols of real Python, JavaScript and TypeScript snippets, with line ranges."""

from __future__ import annotations

import json

import pytest

from adapters.symbols import symbols_of
from kodr_core.tools import run_tool

PY = b'''\
import functools


def plain(a):
    return a


async def fetch(url):
    return url


@functools.cache
def cached():
    return 1


class Store:
    """A store."""

    def get(self, key):
        return key

    async def save(self, key):
        pass

    class Meta:
        def inner(self):
            pass


if True:
    def conditional():
        pass
'''

JS = b"""\
const fs = require("fs");

// a comment with a { brace
function add(a, b) {
  const s = "}";
  return a + b;
}

export const mul = (a, b) => a * b;

export const div = async (a, b) => {
  return a / b;
};

export class Counter {
  constructor() {
    this.n = 0;
  }

  inc() {
    this.n += 1;
    return `${this.n}}`;
  }

  reset = () => {
    this.n = 0;
  };
}

const notAFunction = (1 + 2);
"""

TS = b"""\
export interface Point {
  x: number;
  y: number;
}

export type Id = string;

export function distance(a: Point, b: Point): number {
  return Math.hypot(a.x - b.x, a.y - b.y);
}

export const origin = (): Point => ({ x: 0, y: 0 });

export abstract class Shape {
  constructor(public name: string) {}

  abstract area(): number;

  async describe(): Promise<string> {
    return `${this.name}`;
  }
}
"""


def by_name(symbols):
    return {s["name"]: (s["kind"], s["start_line"], s["end_line"]) for s in symbols}


def test_python_symbols():
    got = by_name(symbols_of("pkg/store.py", PY))
    assert got == {
        "plain": ("function", 4, 5),
        "fetch": ("async function", 8, 9),
        "cached": ("function", 12, 14),  # from the decorator line
        "Store": ("class", 17, 28),
        "Store.get": ("method", 20, 21),
        "Store.save": ("async method", 23, 24),
        "Store.Meta": ("class", 26, 28),
        "Store.Meta.inner": ("method", 27, 28),
        "conditional": ("function", 32, 33),
    }


def test_python_syntax_error_is_a_value_error_naming_the_line():
    with pytest.raises(ValueError, match=r"broken\.py: Python syntax error at line 2"):
        symbols_of("broken.py", b"def ok():\n    return (\n")


def test_javascript_symbols():
    got = by_name(symbols_of("src/calc.js", JS))
    assert got == {
        "add": ("function", 4, 7),
        "mul": ("function", 9, 9),
        "div": ("async function", 11, 13),
        "Counter": ("class", 15, 28),
        "Counter.constructor": ("method", 16, 18),
        "Counter.inc": ("method", 20, 23),
        "Counter.reset": ("method", 25, 27),
    }


def test_typescript_symbols():
    got = by_name(symbols_of("src/geo.ts", TS))
    assert got["distance"] == ("function", 8, 10)
    assert got["origin"] == ("function", 12, 12)
    assert got["Shape"] == ("class", 14, 22)
    assert got["Shape.area"] == ("method", 17, 17)
    assert got["Shape.describe"] == ("async method", 19, 21)
    assert got["Point"] == ("interface", 1, 4) and got["Id"] == ("type", 6, 6)  # tree-sitter sees types too


def test_tsx_and_commonjs_exports():
    tsx = b"export function App(): JSX.Element {\n  return <div>{1}</div>;\n}\n"
    assert by_name(symbols_of("src/App.tsx", tsx)) == {"App": ("function", 1, 3)}
    cjs = b"exports.sum = function (a, b) {\n  return a + b;\n};\n"
    assert by_name(symbols_of("lib.cjs", cjs)) == {"exports.sum": ("function", 1, 3)}


def test_unsupported_language():
    with pytest.raises(ValueError, match=r"not \.rb files"):
        symbols_of("app.rb", b"def x; end\n")


def test_inspect_symbols_tool_over_real_symbols():
    files = {"src/calc.js": JS}
    out = run_tool(
        "inspect_symbols", '{"path": "src/calc.js"}', files=lambda: list(files), read=files.get, symbols=symbols_of
    )
    names = [s["name"] for s in json.loads(out)["symbols"]]
    assert names[:3] == ["add", "mul", "div"] and "Counter.inc" in names
