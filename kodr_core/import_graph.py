"""The code a failing test executes: its import closure inside the workspace.

A repair context that follows imports one level, by relative path only, misses
the file with the bug in most published packages: tests ``require('..')`` (the
package's ``main``/``exports``), import the package by its own name, reach the
implementation through an ``index.js`` or ``__init__.py`` that re-exports it, or
run a built ``dist/`` file. This module follows all of those, to any depth,
bounded by :data:`MAX_CLOSURE_FILES`.

Decisions:

* ``require('..')``, ``require('../')``, ``require('.')`` and a directory
  import resolve through that directory's ``package.json`` (``exports`` ``"."``
  with every condition, then ``main``, then ``module``), then ``index.*``.
* A bare import of the package's own name (root ``package.json`` ``name``), or
  ``name/sub``, is a self-reference and resolves the same way (``exports``
  subpaths too).
* Tests that run ``dist/`` execute ``dist/``: the built file is what the closure
  holds and what the context shows first. When it names a source map
  (``//# sourceMappingURL=x.js.map``) whose ``sources`` exist in the workspace,
  those origins join the closure right after it (role ``source``): a fix may
  belong in either, depending on whether the test command builds.
* Python: ``import a.b.c`` executes ``a/__init__.py`` and ``a/b/__init__.py``
  too, so they join the closure; ``from pkg import name`` follows the package's
  ``__init__`` and whatever it re-exports, to any depth. Roots tried: the
  importer's directory, the workspace root, ``src/`` and ``lib/``. conftest.py
  files above a test are executed by pytest and join the closure.

Pure: the file list and a reader in, paths out.
"""

from __future__ import annotations

import ast
import functools
import json
import posixpath
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

from kodr_core.dependency_dirs import is_dependency_path

Read = Callable[[str], bytes | None]

JS_EXTS = (".js", ".mjs", ".cjs", ".ts", ".tsx", ".jsx", ".mts", ".cts")
MAX_CLOSURE_FILES = 400
MAX_READ_BYTES = 2 * 1024 * 1024  # a bigger file is in the closure but not followed
_JS_SPEC = re.compile(
    r"""(?:\bfrom\s*|\bimport\s*\(?\s*|\brequire\s*\(\s*|\bexport\s*\*\s*from\s*)(['"`])(?P<spec>[^'"`\n]+)\1"""
)
_SOURCE_MAP = re.compile(r"[#@]\s*sourceMappingURL=(?P<url>[^\s'\"*]+)\s*(?:\*/)?\s*$")
_PY_FROM = re.compile(r"^\s*from\s+(?P<dots>\.*)(?P<mod>[\w.]*)\s+import\s+\(?(?P<names>[\w\s,]+)", re.MULTILINE)
_PY_IMPORT = re.compile(r"^\s*import\s+(?P<mods>[\w.]+(?:\s*,\s*[\w.]+)*)", re.MULTILINE)


def _decode(data: bytes | None) -> str | None:
    if data is None or len(data) > MAX_READ_BYTES or b"\x00" in data[:8192]:
        return None
    return data.decode("utf-8", "replace")


# -- JavaScript -------------------------------------------------------------------------------


def _file_candidates(target: str) -> list[str]:
    stem, ext = posixpath.splitext(target)
    cands = [target]
    if ext in (".js", ".mjs", ".cjs", ".jsx"):  # TypeScript ESM imports name the output file
        cands += [stem + e for e in (".ts", ".tsx", ".mts", ".cts")]
    cands += [target + e for e in (*JS_EXTS, ".json")]
    return cands


def _norm(path: str) -> str | None:
    p = posixpath.normpath(path)
    if p == ".":
        return ""
    return None if p == ".." or p.startswith(("../", "/")) else p


def _join(d: str, rel: str) -> str | None:
    return _norm(posixpath.join(d, rel) if d else rel)


def _exports_targets(node: Any, out: list[str]) -> None:
    """Every string target under an ``exports`` entry, conditions in the order written."""
    if isinstance(node, str):
        out.append(node)
    elif isinstance(node, list):
        for n in node:
            _exports_targets(n, out)
    elif isinstance(node, dict):
        for v in node.values():
            _exports_targets(v, out)


def _package_json(d: str, read: Read) -> dict[str, Any] | None:
    text = _decode(read(posixpath.join(d, "package.json") if d else "package.json"))
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def package_entries(d: str, sub: str, files: Collection[str], read: Read) -> list[str]:
    """The files ``<d>`` (a package directory) resolves to for subpath ``sub`` ("." for the root)."""
    pkg = _package_json(d, read) or {}
    targets: list[str] = []
    exports = pkg.get("exports")
    if exports is not None:
        if isinstance(exports, dict) and any(str(k).startswith(".") for k in exports):
            _exports_targets(exports.get(sub), targets)
        elif sub == ".":
            _exports_targets(exports, targets)
    if sub == ".":
        for key in ("main", "module"):
            if isinstance(pkg.get(key), str):
                targets.append(pkg[key])
    else:
        targets.append(sub)
    found: list[str] = []
    for t in targets:
        p = _join(d, t)
        if p is not None:
            found += _existing_js(p, files)[:1]
    if not found:
        for e in JS_EXTS:
            idx = f"{d}/index{e}" if d else f"index{e}"
            if idx in files:
                found.append(idx)
                break
    return list(dict.fromkeys(found))


def _existing_js(target: str, files: Collection[str]) -> list[str]:
    for c in _file_candidates(target):
        if c in files:
            return [c]
    for e in JS_EXTS:
        c = f"{target}/index{e}" if target else f"index{e}"
        if c in files:
            return [c]
    return []


def _is_dir(d: str, files: Collection[str]) -> bool:
    prefix = d + "/" if d else ""
    return any(f.startswith(prefix) for f in files)


def resolve_js(importer: str, spec: str, files: Collection[str], read: Read, own_name: str | None
               ) -> tuple[list[str], str | None]:  # fmt: skip
    """(workspace files ``spec`` names from ``importer``; the path a missing relative import would have)."""
    spec = spec.split("?")[0].split("#")[0]
    if spec.startswith("."):
        target = _join(posixpath.dirname(importer), spec)
        if target is None:
            return [], None
        dir_like = spec in (".", "..") or spec.endswith("/")
        if not dir_like:
            hit = _existing_js(target, files) if (target + "/package.json") not in files else []
            if hit:
                return hit, None
        if (target + "/package.json" if target else "package.json") in files or dir_like or _is_dir(target, files):
            hit = package_entries(target, ".", files, read)
            if hit:
                return hit, None
        ext = posixpath.splitext(target)[1]
        missing = target if ext in (*JS_EXTS, ".json") else target + (posixpath.splitext(importer)[1] or ".js")
        return [], None if dir_like else missing
    if own_name and (spec == own_name or spec.startswith(own_name + "/")):
        sub = "." + spec[len(own_name) :]
        return package_entries("", sub, files, read), None
    return [], None


def source_map_origins(path: str, text: str, files: Collection[str], read: Read) -> list[str]:
    """Workspace files a built JS file's source map says it came from."""
    tail = text[-2000:].rstrip().splitlines()[-1:] if text else []
    m = _SOURCE_MAP.search(tail[0]) if tail else None
    if not m or m["url"].startswith("data:"):
        return []
    map_path = _join(posixpath.dirname(path), m["url"])
    raw = _decode(read(map_path)) if map_path and map_path in files else None
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        return []
    if not isinstance(data, dict) or not isinstance(data.get("sources"), list):
        return []
    root = data.get("sourceRoot") if isinstance(data.get("sourceRoot"), str) else ""
    out = []
    for s in data["sources"]:
        if not isinstance(s, str) or "://" in s and not s.startswith("webpack://"):
            continue
        s = re.sub(r"^webpack://[^/]*/", "", s)
        p = _join(posixpath.dirname(map_path or ""), posixpath.join(root, s) if root else s)
        if p and p in files and not is_dependency_path(p):
            out.append(p)
    return out


# -- Python -----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def py_imports(text: str) -> list[tuple[int, str, list[str]]]:
    """(level, module, names) for each import; a regex fallback when the file does not parse."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        out = [(len(m["dots"]), m["mod"], [n.strip() for n in m["names"].split(",") if n.strip()])
               for m in _PY_FROM.finditer(text)]  # fmt: skip
        for m in _PY_IMPORT.finditer(text):
            out += [(0, mod.strip(), []) for mod in m["mods"].split(",")]
        return out
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            out.append((node.level, node.module or "", [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(0, a.name, []) for a in node.names]
    return out


def _py_module(base: str, dotted: str, files: Collection[str]) -> str | None:
    p = posixpath.join(base, *dotted.split(".")) if dotted else base
    for cand in (f"{p}.py", f"{p}/__init__.py"):
        cand = posixpath.normpath(cand)
        if cand in files:
            return cand
    return None


def _parents(root: str, dotted: str, files: Collection[str]) -> list[str]:
    """The ``__init__.py`` files importing ``dotted`` at ``root`` executes on the way."""
    parts = dotted.split(".")[:-1]
    out = []
    for i in range(1, len(parts) + 1):
        init = posixpath.normpath(posixpath.join(root, *parts[:i], "__init__.py"))
        if init in files:
            out.append(init)
    return out


def resolve_py(importer: str, level: int, module: str, names: list[str], files: Collection[str]
               ) -> tuple[list[str], str | None]:  # fmt: skip
    """(workspace files an import executes, innermost last; a missing relative module's path)."""
    here = posixpath.dirname(importer)
    if level:
        base = here
        for _ in range(level - 1):
            base = posixpath.dirname(base)
        roots = [base]
    else:
        roots = list(dict.fromkeys([here, "", "src", "lib"]))
    for root in roots:
        subs = [m for n in names if (m := _py_module(root, f"{module}.{n}".strip("."), files))]
        mod = _py_module(root, module, files) if module or level else None
        found = ([mod] if mod else []) + subs
        if found:
            chain = _parents(root, module, files) if module else []
            return list(dict.fromkeys(chain + found)), None
    if level and module:
        return [], posixpath.normpath(posixpath.join(roots[0], *module.split("."))) + ".py"
    return [], None


def conftests_of(path: str, files: Collection[str]) -> list[str]:
    """conftest.py files pytest runs for a test at ``path``: its directory and every parent."""
    out = []
    d = posixpath.dirname(path)
    while True:
        c = posixpath.join(d, "conftest.py") if d else "conftest.py"
        if c in files and c != path:
            out.append(c)
        if not d:
            break
        d = posixpath.dirname(d)
    return out


# -- one file's imports, and the closure ----------------------------------------------------


@dataclass(frozen=True)
class Edge:
    path: str
    via: str  # import | source (a source map's origin) | conftest


def imports_of(path: str, text: str, files: Collection[str], read: Read | None = None,
               own_name: str | None = None) -> tuple[list[Edge], list[str]]:  # fmt: skip
    """What ``path`` executes in the workspace, and relative imports that name no file yet."""
    read = read or (lambda _p: None)
    found: list[Edge] = []
    missing: list[str] = []
    if path.endswith(".py"):
        for level, module, names in py_imports(text):
            got, miss = resolve_py(path, level, module, names, files)
            found += [Edge(g, "import") for g in got]
            missing += [miss] if miss else []
    elif posixpath.splitext(path)[1] in JS_EXTS:
        for m in _JS_SPEC.finditer(text):
            got, miss = resolve_js(path, m["spec"], files, read, own_name)
            found += [Edge(g, "import") for g in got]
            missing += [miss] if miss else []
        found += [Edge(s, "source") for s in source_map_origins(path, text, files, read)]
    seen: set[str] = set()
    edges = []
    for e in found:
        if e.path != path and e.path not in seen and not is_dependency_path(e.path):
            seen.add(e.path)
            edges.append(e)
    return edges, list(dict.fromkeys(m for m in missing if not is_dependency_path(m)))


def own_package_name(read: Read) -> str | None:
    pkg = _package_json("", read)
    name = pkg.get("name") if pkg else None
    return name if isinstance(name, str) and name else None


@dataclass(frozen=True)
class Closure:
    """Files reached from the start files, breadth first (nearest evidence first)."""

    order: tuple[tuple[str, int, str], ...]  # (path, depth, via)
    truncated: bool  # MAX_CLOSURE_FILES was reached

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(p for p, _, _ in self.order)


def import_closure(starts: Iterable[str], files: Collection[str], read: Read,
                   limit: int = MAX_CLOSURE_FILES) -> Closure:  # fmt: skip
    """Everything the ``starts`` (failing tests) execute in the workspace, to any depth."""
    own = own_package_name(read)
    order: list[tuple[str, int, str]] = []
    seen: set[str] = set()
    frontier: list[tuple[str, int]] = []
    for s in starts:
        if s in files and s not in seen:
            seen.add(s)
            frontier.append((s, 0))
            for c in conftests_of(s, files) if s.endswith(".py") else []:
                if c not in seen:
                    seen.add(c)
                    order.append((c, 1, "conftest"))
                    frontier.append((c, 1))
    truncated = False
    i = 0
    while i < len(frontier):
        path, depth = frontier[i]
        i += 1
        text = _decode(read(path))
        if text is None:
            continue
        for edge in imports_of(path, text, files, read, own)[0]:
            if edge.path in seen:
                continue
            if len(order) >= limit:
                truncated = True
                break
            seen.add(edge.path)
            order.append((edge.path, depth + 1, edge.via))
            frontier.append((edge.path, depth + 1))
    return Closure(tuple(order), truncated)
