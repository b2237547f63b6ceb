"""Symbols (functions, classes, methods) of a source file, with line ranges.

Feeds the ``inspect_symbols`` tool, so a model can read the part of a file it
needs instead of the whole file. Python uses :mod:`ast`. JavaScript and
TypeScript use tree-sitter when its wheels are installed (they are a project
dependency), else :func:`scan_js_symbols`, a brace-matching scanner that masks
strings, comments and template literals first. The scanner is the documented
fallback: it sees top-level declarations and class members only, and a ``{`` or
``}`` inside a regex literal can throw its end lines off.

Each symbol is ``{"name", "kind", "start_line", "end_line"}`` (1-based, inclusive);
methods are named ``Class.method``. Unsupported languages and Python syntax
errors raise ValueError with a message meant for the model.
"""

from __future__ import annotations

import ast
import functools
import re
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
            parser = _parser(grammar)
            return _ts_symbols(parser.parse(data)) if parser is not None else scan_js_symbols(data)
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
def _parser(grammar: str) -> Any | None:
    """A tree-sitter parser, or None when the wheels are missing (then the scanner runs)."""
    try:
        import tree_sitter

        if grammar == "javascript":
            import tree_sitter_javascript as mod

            lang = mod.language()
        else:
            import tree_sitter_typescript as mod  # type: ignore[no-redef]

            lang = mod.language_tsx() if grammar == "tsx" else mod.language_typescript()
        return tree_sitter.Parser(tree_sitter.Language(lang))
    except (ImportError, AttributeError, TypeError, ValueError):
        return None


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


# -- the fallback scanner ---------------------------------------------------------------------

_ID = r"[A-Za-z_$][\w$]*"
_FUNC = re.compile(rf"^\s*(?:export\s+)?(?:default\s+)?(?:declare\s+)?(async\s+)?function\b\s*\*?\s*({_ID})")
_CLASS = re.compile(rf"^\s*(?:export\s+)?(?:default\s+)?(?:declare\s+)?(?:abstract\s+)?class\s+({_ID})")
_CONST = re.compile(rf"^\s*(?:export\s+)?(?:const|let|var)\s+({_ID})\s*(?::[^=]+)?=\s*(async\s+)?")
_MODS = r"(?:(?:public|private|protected|static|readonly|override|abstract|async|get|set|declare)\s+)*"
_METHOD = re.compile(rf"^\s*({_MODS})\*?\s*(#?{_ID})\s*(?:<[^>]*>)?\s*\(")
_FIELD = re.compile(rf"^\s*({_MODS})(#?{_ID})\s*[?!]?\s*(?::[^=]+)?=\s*(async\s+)?")
_NOT_METHODS = {"if", "for", "while", "switch", "catch", "function", "return", "with", "super"}


def _mask(text: str) -> str:
    """Blank out strings, template literals and comments (newlines kept) so braces can be counted."""
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "/" and text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j == -1 else j
        elif c == "/" and text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j == -1 else j + 2
        elif c in "'\"`":
            j = i + 1
            while j < n and text[j] != c and not (c != "`" and text[j] == "\n"):
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            i += 1  # keep the opening quote so `x = "` still reads as a value
        else:
            i += 1
            continue
        for k in range(i, j):
            if out[k] != "\n":
                out[k] = " "
        i = j
    return "".join(out)


def _match_close(masked: str, i: int, open_: str, close: str) -> int:
    """Index of the bracket closing the one at ``i`` (end of text when unbalanced)."""
    depth = 0
    for j in range(i, len(masked)):
        if masked[j] == open_:
            depth += 1
        elif masked[j] == close:
            depth -= 1
            if depth == 0:
                return j
    return len(masked) - 1


def scan_js_symbols(data: bytes) -> list[Symbol]:
    """The fallback when tree-sitter is missing: top-level functions, classes, const functions, class members."""
    masked = _mask(data.decode("utf-8", "replace"))
    starts = [0]
    for m in re.finditer("\n", masked):
        starts.append(m.end())

    def line_of(pos: int) -> int:
        lo, hi = 0, len(starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if starts[mid] <= pos else (lo, mid - 1)
        return lo + 1

    def end_of_callable(pos: int) -> int:
        """After a parameter list's '(' : the line where the body (or a bodiless signature) ends."""
        close = _match_close(masked, pos, "(", ")")
        rest = re.compile(r"\s*(?::[^{;=]*)?(=>)?\s*([{;]?)").match(masked, close + 1)
        assert rest is not None
        if rest.group(2) == "{":
            return line_of(_match_close(masked, rest.end() - 1, "{", "}"))
        if rest.group(1):  # arrow with an expression body: ends at the ';' or the line's end
            semi = masked.find(";", rest.end())
            nl = masked.find("\n", rest.end())
            stops = [p for p in (semi, nl) if p != -1]
            return line_of(min(stops) if stops else len(masked) - 1)
        return line_of(rest.end())

    def value_end(pos: int) -> int | None:
        """If a function value starts at ``pos``: its last line, else None."""
        m = re.compile(rf"function\b\s*\*?\s*(?:{_ID})?\s*(?=\()|(\()|({_ID})\s*=>").match(masked, pos)
        if m is None:
            return None
        if m.group(2):  # x => …
            return end_of_callable_arrow(m.end())
        paren = m.end() - 1 if m.group(1) else masked.find("(", m.end())
        close = _match_close(masked, paren, "(", ")")
        if m.group(1) and not re.compile(r"\s*(?::[^{;=]*)?=>").match(masked, close + 1):
            return None  # a parenthesised expression, not an arrow function
        return end_of_callable(paren)

    def end_of_callable_arrow(pos: int) -> int:
        brace = re.compile(r"\s*\{").match(masked, pos)
        if brace:
            return line_of(_match_close(masked, brace.end() - 1, "{", "}"))
        semi, nl = masked.find(";", pos), masked.find("\n", pos)
        stops = [p for p in (semi, nl) if p != -1]
        return line_of(min(stops) if stops else len(masked) - 1)

    out: list[Symbol] = []
    classes: list[tuple[str, int, int, int]] = []  # (name, body open, body close, member depth)
    depth = 0
    for lineno, start in enumerate(starts, 1):
        end = starts[lineno] if lineno < len(starts) else len(masked)
        line = masked[start:end]
        owner = next((c for c in classes if c[1] < start <= c[2] and depth == c[3]), None) if classes else None
        if depth == 0:
            if m := _FUNC.match(line):
                paren = masked.find("(", start + m.end())
                kind = "async function" if m.group(1) else "function"
                out.append(_sym(m.group(2), kind, lineno, end_of_callable(paren) if paren != -1 else lineno))
            elif m := _CLASS.match(line):
                brace = masked.find("{", start + m.end())
                close = _match_close(masked, brace, "{", "}") if brace != -1 else start
                out.append(_sym(m.group(1), "class", lineno, line_of(close)))
                classes.append((m.group(1), brace, close, 1))
            elif (m := _CONST.match(line)) and (last := value_end(start + m.end())) is not None:
                out.append(_sym(m.group(1), "async function" if m.group(2) else "function", lineno, last))
        elif owner is not None:
            if (m := _METHOD.match(line)) and m.group(2) not in _NOT_METHODS:
                kind = "async method" if "async" in m.group(1).split() else "method"
                out.append(_sym(f"{owner[0]}.{m.group(2)}", kind, lineno, end_of_callable(start + m.end() - 1)))
            elif (m := _FIELD.match(line)) and (last := value_end(start + m.end())) is not None:
                kind = "async method" if m.group(3) else "method"
                out.append(_sym(f"{owner[0]}.{m.group(2)}", kind, lineno, last))
        depth += line.count("{") - line.count("}")
        depth = max(depth, 0)
    return out
