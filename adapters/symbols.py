"""Symbols (functions, classes, methods) of a source file, with line ranges.

Feeds the ``inspect_symbols`` tool, so a model can read the part of a file it
needs instead of the whole file. Python uses :mod:`ast`; JavaScript and
TypeScript use tree-sitter (a declared dependency: there is no second, regex
scanner to drift from it).

Each symbol is ``{"name", "kind", "start_line", "end_line"}`` (1-based, inclusive);
methods are named ``Class.method``. Unsupported languages and Python syntax
errors raise ValueError with a message meant for the model.
"""

from __future__ import annotations

import ast
import functools
from typing import Any

Symbol = dict[str, Any]

PYTHON = (".py", ".pyi")
JAVASCRIPT = (".js", ".mjs", ".cjs", ".jsx")
TYPESCRIPT = (".ts", ".mts", ".cts")
TSX = (".tsx",)


def symbols_of(path: str, data: bytes) -> list[Symbol]:
    """The file's symbols in source order; ValueError when the language is unsupported or Python won't parse."""
    lower = path.lower()
    if lower.endswith(PYTHON):
        return python_symbols(data, path)
    for exts, grammar in ((JAVASCRIPT, "javascript"), (TYPESCRIPT, "typescript"), (TSX, "tsx")):
        if lower.endswith(exts):
            return _ts_symbols(_parser(grammar).parse(data))
    ext = "." + lower.rsplit(".", 1)[-1] if "." in lower.rsplit("/", 1)[-1] else "(no extension)"
    raise ValueError(f"inspect_symbols knows Python, JavaScript and TypeScript, not {ext} files; use read_file")


def _sym(name: str, kind: str, start: int, end: int) -> Symbol:
    return {"name": name, "kind": kind, "start_line": start, "end_line": end}


# -- Python ------------------------------------------------------------------------


def python_symbols(data: bytes, path: str = "<file>") -> list[Symbol]:
    try:
        tree = ast.parse(data, filename=path)
    except SyntaxError as exc:
        raise ValueError(f"{path}: Python syntax error at line {exc.lineno}: {exc.msg}") from None
    except ValueError as exc:  # NUL bytes on 3.11
        raise ValueError(f"{path}: cannot parse as Python: {exc}") from None
    out: list[Symbol] = []

    def visit(body: list[ast.stmt], prefix: str, in_class: bool) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                start = min([d.lineno for d in node.decorator_list] + [node.lineno])
                end = node.end_lineno or node.lineno
                if isinstance(node, ast.ClassDef):
                    out.append(_sym(prefix + node.name, "class", start, end))
                    visit(node.body, f"{prefix}{node.name}.", True)
                else:
                    kind = "method" if in_class else "function"
                    kind = f"async {kind}" if isinstance(node, ast.AsyncFunctionDef) else kind
                    out.append(_sym(prefix + node.name, kind, start, end))
            elif isinstance(node, (ast.If, ast.Try, ast.With)):  # `if TYPE_CHECKING:`, `try: ... except ImportError:`
                for part in ("body", "orelse", "finalbody"):
                    visit(getattr(node, part, []) or [], prefix, in_class)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body, prefix, in_class)

    visit(tree.body, "", False)
    return out


# -- JavaScript / TypeScript via tree-sitter ------------------------------------------


@functools.cache
def _parser(grammar: str) -> Any:
    """The tree-sitter parser for ``javascript``, ``typescript`` or ``tsx``."""
    import tree_sitter

    if grammar == "javascript":
        import tree_sitter_javascript as mod

        lang = mod.language()
    else:
        import tree_sitter_typescript as mod  # type: ignore[no-redef]

        lang = mod.language_tsx() if grammar == "tsx" else mod.language_typescript()  # type: ignore[attr-defined]
    return tree_sitter.Parser(tree_sitter.Language(lang))


_FUNCTION_VALUES = {"arrow_function", "function_expression", "function", "generator_function"}
_CLASSES = {"class_declaration", "abstract_class_declaration", "class"}
_NAMED_KINDS = {"interface_declaration": "interface", "type_alias_declaration": "type", "enum_declaration": "enum"}


def _text(node: Any) -> str:
    return node.text.decode("utf-8", "replace") if node is not None else ""


def _lines(node: Any) -> tuple[int, int]:
    return node.start_point.row + 1, node.end_point.row + 1


def _is_async(node: Any) -> bool:
    return any(c.type == "async" for c in node.children[:4])


def _ts_symbols(tree: Any) -> list[Symbol]:
    out: list[Symbol] = []

    def add(name: str, kind: str, node: Any) -> None:
        out.append(_sym(name, kind, *_lines(node)))

    def members(cls: str, body: Any) -> None:
        for m in body.named_children if body is not None else []:
            if m.type in ("method_definition", "abstract_method_signature"):
                kind = "async method" if _is_async(m) else "method"
                add(f"{cls}.{_text(m.child_by_field_name('name'))}", kind, m)
            elif m.type in ("public_field_definition", "field_definition"):
                value = m.child_by_field_name("value")
                name = m.child_by_field_name("name") or m.child_by_field_name("property")
                if value is not None and value.type in _FUNCTION_VALUES:
                    add(f"{cls}.{_text(name)}", "async method" if _is_async(value) else "method", m)

    def klass(name: str, node: Any) -> None:
        add(name, "class", node)
        members(name, node.child_by_field_name("body"))

    def statement(node: Any, prefix: str) -> None:
        t = node.type
        if t == "export_statement":
            for child in node.named_children:
                statement(child, prefix)
        elif t in ("function_declaration", "generator_function_declaration"):
            add(
                prefix + _text(node.child_by_field_name("name")),
                "async function" if _is_async(node) else "function",
                node,
            )
        elif t in _CLASSES:
            klass(prefix + (_text(node.child_by_field_name("name")) or "default"), node)
        elif t in _NAMED_KINDS:
            add(prefix + _text(node.child_by_field_name("name")), _NAMED_KINDS[t], node)
        elif t in ("lexical_declaration", "variable_declaration"):
            for decl in node.named_children:
                value = decl.child_by_field_name("value") if decl.type == "variable_declarator" else None
                name = prefix + _text(decl.child_by_field_name("name")) if value is not None else ""
                if value is not None and value.type in _FUNCTION_VALUES:
                    add(name, "async function" if _is_async(value) else "function", decl)
                elif value is not None and value.type == "class":
                    klass(name, decl)
        elif t == "expression_statement":  # exports.f = function…, module.exports.f = () => …
            expr = node.named_children[0] if node.named_children else None
            if expr is not None and expr.type == "assignment_expression":
                left, right = expr.child_by_field_name("left"), expr.child_by_field_name("right")
                if (
                    right is not None
                    and right.type in _FUNCTION_VALUES
                    and _text(left).startswith(("exports.", "module.exports."))
                ):
                    add(_text(left), "function", node)
                elif right is not None and right.type in ("internal_module", "module"):
                    statement(right, prefix)
            elif expr is not None and expr.type in ("internal_module", "module"):
                statement(expr, prefix)
        elif t in ("internal_module", "module"):  # TS namespaces
            body = node.child_by_field_name("body")
            name = _text(node.child_by_field_name("name"))
            for child in body.named_children if body is not None else []:
                statement(child, f"{prefix}{name}.")

    for top in tree.root_node.named_children:
        statement(top, "")
    return out
