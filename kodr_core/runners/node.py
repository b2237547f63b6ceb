"""Node's own test runner (``node --test``): its TAP and spec reporters' text.

Counts come from the closing summary (``# pass 3`` in TAP, ``ℹ pass 3`` in
spec), summed when a script ran the runner more than once. The failure line is
the test body's frame of the error's own stack, never a frame quoted inside the
assertion message (``+ '    at …'`` lines of a diff).
"""

from __future__ import annotations

import re

from kodr_core.results import Failure, Parser
from kodr_core.runners.report import (
    TestReport,
    dedent,
    failure,
    js_location,
    path_of,
    strip_ansi,
)

_SUMMARY = re.compile(r"^(?:#|ℹ)\s+(tests|pass|fail|cancelled|skipped|todo)\s+(\d+)\s*$")


def parse_node_text(text: str) -> TestReport | None:
    """Node's TAP or spec reporter output; None when there is no Node summary in it.

    Counts come from the closing summary (``# pass 3`` in TAP, ``ℹ pass 3`` in
    spec), summed when a script ran the runner more than once.
    """
    text = strip_ansi(text)
    lines = text.splitlines()
    counts = {k: 0 for k in ("tests", "pass", "fail", "cancelled", "skipped", "todo")}
    found = False
    for line in lines:
        m = _SUMMARY.match(line.strip())
        if m:
            counts[m[1]] += int(m[2])
            found = m[1] == "tests" or found
    if not found:
        return None
    failures = _tap_failures(lines) + _spec_failures(lines)
    return TestReport(
        passed=counts["pass"],
        failed=counts["fail"] + counts["cancelled"],
        skipped=counts["skipped"] + counts["todo"],
        total=counts["tests"],
        failures=failures,
        parser=Parser.NODE_TEXT,
    )


_TAP_SUBTEST = re.compile(r"^(\s*)# Subtest: (.*)$")
_TAP_NOT_OK = re.compile(r"^(\s*)not ok \d+ - (.*?)(?:\s+#\s+(?:TODO|SKIP)\b.*)?$")


def _tap_failures(lines: list[str]) -> list[Failure]:
    """``not ok`` lines (not suites, not TODO) with their YAML diagnostics."""
    out: list[Failure] = []
    parents: list[str] = []
    for i, line in enumerate(lines):
        m = _TAP_SUBTEST.match(line)
        if m:
            depth = len(m[1]) // 4
            parents = parents[:depth] + [m[2]]
            continue
        m = _TAP_NOT_OK.match(line)
        if not m or re.search(r"#\s+TODO\b", line):
            continue
        depth = len(m[1]) // 4
        yaml = _tap_yaml(lines, i + 1, len(m[1]))
        if yaml.get("type") == "suite" or yaml.get("failureType") == "subtestsFailed":
            continue
        stack = yaml.get("stack", "")
        file, line_no = js_location("\n".join("at " + s for s in stack.splitlines()))
        loc = re.match(r"^(.*):(\d+):\d+$", yaml.get("location", ""))
        if line_no is None and loc:
            file, line_no = path_of(loc[1]), int(loc[2])
        message = yaml.get("error", "")
        name = " > ".join([*parents[:depth], m[2]])
        out.append(failure(name, file, line_no, message,
                           f"{message}\n{stack}"))  # fmt: skip
    return out


def _tap_yaml(lines: list[str], start: int, indent: int) -> dict[str, str]:
    """The few keys we need from a TAP YAML diagnostic block (scalars and ``|-`` blocks)."""
    if start >= len(lines) or lines[start].strip() != "---":
        return {}
    out: dict[str, str] = {}
    key_indent = indent + 2
    i = start + 1
    while i < len(lines) and lines[i].strip() != "...":
        line = lines[i]
        m = re.match(rf"^ {{{key_indent}}}(\w+):\s?(.*)$", line)
        i += 1
        if not m:
            continue
        key, value = m[1], m[2]
        if value in ("|-", "|", ">-", ">"):
            block = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" " * (key_indent + 2))):
                if lines[i].strip() == "...":
                    break
                block.append(lines[i][key_indent + 2 :])
                i += 1
            value = "\n".join(block).strip()
        elif len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1].replace("''", "'")
        out[key] = value
    return out


_SPEC_AT = re.compile(r"^test at (.+?):(\d+):(\d+)$")
_SPEC_FAIL = re.compile(r"^(\s*)✖ (.*?)(?: \([\d.]+m?s\))?(?: # .*)?$")
_SPEC_ANY = re.compile(r"^(\s*)(?:✔|✖|﹣|▶|⚠) (.*?)(?: \([\d.]+m?s\))?(?: # .*)?$")


def _spec_failures(lines: list[str]) -> list[Failure]:
    """Failures from the spec reporter's closing "✖ failing tests:" section.

    The location is the test body's frame in the stack (as for junit), else the
    test's declaration ("test at file:line:col").
    """
    try:
        start = max(i for i, l in enumerate(lines) if l.strip() == "✖ failing tests:")
    except ValueError:
        return []
    full_names = _spec_full_names(lines[:start])
    out: list[Failure] = []
    i = start + 1
    while i < len(lines):
        at = _SPEC_AT.match(lines[i].strip())
        fail = _SPEC_FAIL.match(lines[i + 1]) if at and i + 1 < len(lines) else None
        if not (at and fail):
            i += 1
            continue
        body: list[str] = []
        j = i + 2
        while j < len(lines) and not _SPEC_AT.match(lines[j].strip()):
            body.append(lines[j])
            j += 1
        block = dedent(body)
        message_lines = []
        for b in block.splitlines():
            if b.strip().startswith("at "):
                break
            message_lines.append(b)
        leaf = fail[2]
        name = full_names.get(leaf, leaf)
        file, line_no = js_location(block)
        if line_no is None:
            file, line_no = path_of(at[1]), int(at[2])
        out.append(failure(name, file, line_no,
                           "\n".join(message_lines).strip().strip("'"),
                           block))  # fmt: skip
        i = j
    return out


def _spec_full_names(lines: list[str]) -> dict[str, str]:
    """Leaf name → "suite > leaf", from the indentation of the spec body."""
    out: dict[str, str] = {}
    suites: list[tuple[int, str]] = []
    for line in lines:
        m = _SPEC_ANY.match(line)
        if not m:
            continue
        indent = len(m[1])
        suites = [(d, n) for d, n in suites if d < indent]
        if line.strip().startswith("▶"):
            suites.append((indent, m[2]))
        elif line.strip().startswith("✖") and suites:
            out.setdefault(m[2], " > ".join([n for _, n in suites] + [m[2]]))
    return out
