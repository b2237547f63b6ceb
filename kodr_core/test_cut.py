"""Cut a large test file down to its failing tests, instead of to its head.

A 200 KB test file shown from the top uses the whole context budget on tests
that pass. What the model needs is the file's imports and set-up, and the
failing tests themselves. Python files are read with :mod:`ast`; JavaScript and
TypeScript with tree-sitter (``it``/``test``/``specify`` calls whose title
matches a failure name, with their enclosing ``describe`` header lines). The
cut keeps whole lines in file order and marks each gap, so a model can still
anchor an edit on any line it sees.

Pure: text and failure names in, an excerpt (or None when nothing matched) out.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterable
from typing import Any

_TEST_CALLS = {"it", "test", "specify", "xit", "fit"}
_SUITE_CALLS = {"describe", "suite", "context"}
MAX_HEADER_LINES = 60


def render(text: str, keep: Iterable[int], comment: str) -> str:
    """The 1-based lines ``keep`` of ``text``, in order, with a marker line for each gap."""
    lines = text.splitlines(keepends=True)
    wanted = sorted({n for n in keep if 1 <= n <= len(lines)})
    out: list[str] = []
    last = 0
    for n in wanted:
        if n > last + 1:
            out.append(f"{comment} … lines {last + 1}-{n - 1} not shown …\n")
        line = lines[n - 1]
        out.append(line if line.endswith("\n") else line + "\n")
        last = n
    if wanted and last < len(lines):
        out.append(f"{comment} … lines {last + 1}-{len(lines)} not shown …\n")
    return "".join(out)


def _name_tokens(names: list[str]) -> list[tuple[set[str], str]]:
    """Each failure name's identifier tokens (``tests/t.py::TestA::test_b[1]`` → test_b, TestA, …)."""
    return [(set(re.findall(r"[A-Za-z_]\w*", re.sub(r"\[.*$", "", n))), n) for n in names]


def _matches_py(fn: str, cls: str | None, tokens: list[tuple[set[str], str]]) -> bool:
    return any(fn in toks and (cls is None or cls in toks or ("::" not in name and "." not in name))
               for toks, name in tokens)  # fmt: skip


def _python_lines(text: str, names: list[str]) -> set[int] | None:
    tokens = _name_tokens(names)
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    keep: set[int] = set()
    hit = False

    def span(node: ast.AST) -> range:
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])  # type: ignore[attr-defined]
        return range(start, (node.end_lineno or node.lineno) + 1)  # type: ignore[attr-defined]

    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if _matches_py(node.name, None, tokens):
                keep |= set(span(node))
                hit = True
        elif isinstance(node, ast.ClassDef):
            methods = [m for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))]
            chosen = [m for m in methods if _matches_py(m.name, node.name, tokens)]
            if chosen:
                hit = True
                keep |= set(range(span(node).start, node.body[0].lineno))  # class line(s) and decorators
                for m in methods:
                    if m in chosen or m.name in ("setUp", "tearDown", "setup_method", "setUpClass"):
                        keep |= set(span(m))
        else:
            s = span(node)
            if len(s) <= MAX_HEADER_LINES:  # imports, constants, fixtures set-up
                keep |= set(s)
    return keep if hit else None


@functools.cache
def _ts_parser(kind: str) -> Any | None:
    try:
        import tree_sitter

        if kind == "js":
            import tree_sitter_javascript as mod

            lang = mod.language()
        else:
            import tree_sitter_typescript as mod  # type: ignore[no-redef]

            lang = mod.language_tsx() if kind == "tsx" else mod.language_typescript()  # type: ignore[attr-defined]
        return tree_sitter.Parser(tree_sitter.Language(lang))
    except (ImportError, AttributeError, TypeError, ValueError):
        return None


def _callee(node: Any) -> str:
    fn = node.child_by_field_name("function")
    while fn is not None and fn.type == "member_expression":  # it.only, test.skip, describe.each
        fn = fn.child_by_field_name("object")
    return str(fn.text.decode("utf-8", "replace")) if fn is not None and fn.type == "identifier" else ""


def _title(node: Any) -> str | None:
    args = node.child_by_field_name("arguments")
    if args is None or not args.named_children:
        return None
    first = args.named_children[0]
    if first.type in ("string", "template_string"):
        return str(first.text.decode("utf-8", "replace"))[1:-1]
    return None


def _title_matches(title: str, names: list[str]) -> bool:
    t = title.strip()
    return bool(t) and any(n.strip() == t or n.strip().endswith(t) or (len(t) >= 8 and t in n) for n in names)


def _js_lines(text: str, names: list[str], kind: str) -> set[int] | None:
    parser = _ts_parser(kind)
    if parser is None:
        return None
    tree = parser.parse(text.encode("utf-8"))
    keep: set[int] = set()
    hit = False
    for node in tree.root_node.named_children:  # top level: imports, requires, helpers that are small
        rows = node.end_point.row - node.start_point.row + 1
        if (
            node.type in ("import_statement", "lexical_declaration", "variable_declaration")
            and rows <= MAX_HEADER_LINES
        ):
            keep |= set(range(node.start_point.row + 1, node.end_point.row + 2))
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type == "call_expression" and _callee(node) in _TEST_CALLS:
            title = _title(node)
            if title is not None and _title_matches(title, names):
                hit = True
                keep |= set(range(node.start_point.row + 1, node.end_point.row + 2))
                parent = node.parent
                while parent is not None:  # describe(...) headers around it
                    if parent.type == "call_expression" and _callee(parent) in _SUITE_CALLS:
                        keep.add(parent.start_point.row + 1)
                        keep.add(parent.end_point.row + 1)
                    parent = parent.parent
                continue
        stack.extend(reversed(node.named_children))
    return keep if hit else None


def cut_to_failing(path: str, text: str, names: list[str]) -> str | None:
    """``text`` reduced to its set-up and the tests named in ``names``; None when none is found."""
    names = [n for n in names if n]
    if not names:
        return None
    if path.endswith(".py"):
        keep, comment = _python_lines(text, names), "#"
    else:
        kind = "tsx" if path.endswith(".tsx") else "ts" if re.search(r"\.[cm]?ts$", path) else "js"
        keep, comment = _js_lines(text, names, kind), "//"
    return render(text, keep, comment) if keep else None
