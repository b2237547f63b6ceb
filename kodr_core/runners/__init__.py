"""Turn a test runner's output into honest counts and failures: one reader per runner.

Structured output (junit XML, which pytest and Node's test runner both write) is
preferred; the text readers are the fallback for runners that wrote none (mocha,
tape, ava, jest, vitest, an npm script with its own reporter) and fill in
locations junit lacks (Node 20's junit has no file/line attributes). Pure
functions over strings.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

from kodr_core.results import Failure, Parser
from kodr_core.runners.ava import parse_ava_text
from kodr_core.runners.jest import parse_jest_text
from kodr_core.runners.junit import parse_junit
from kodr_core.runners.mocha import parse_mocha_text
from kodr_core.runners.node import parse_node_text
from kodr_core.runners.pytest import parse_pytest_text
from kodr_core.runners.report import (
    TestReport,
    bounded_lines,
    failure,
    path_of,
    strip_ansi,
)
from kodr_core.runners.tape import parse_tape_text
from kodr_core.runners.unittest import parse_unittest_text
from kodr_core.runners.vitest import parse_vitest_text

#: Command kinds whose output is Python's (pytest, unittest); every other kind runs a JS runner.
PYTHON_KINDS = frozenset({"pytest", "unittest"})

__all__ = [
    "TestReport",
    "parse_ava_text",
    "parse_jest_text",
    "parse_junit",
    "parse_mocha_text",
    "parse_node_text",
    "parse_pytest_text",
    "parse_tape_text",
    "parse_unittest_text",
    "parse_vitest_text",
    "report_from_outputs",
]


def report_from_outputs(
    kind: str,
    stdout: str,
    stderr: str,
    junit_xml: str | None,
    *,
    root: str | None = None,
) -> TestReport | None:
    """The best report for a run: junit first, then the text parsers for ``kind``.

    For Node, failures the junit left without a location take it from the text.
    ``root`` (the workspace) makes absolute failure paths relative to it.
    """
    text = bounded_lines(f"{stdout}\n{stderr}")
    text_parsers: list[Callable[[str], TestReport | None]]
    if kind in PYTHON_KINDS:
        text_parsers = [parse_pytest_text, parse_unittest_text]
    else:  # node, npm, npx: a script may run any JS runner (tape before node: both print "# tests N")
        text_parsers = [parse_tape_text, parse_node_text, parse_jest_text, parse_vitest_text, parse_mocha_text, parse_ava_text,
                        parse_pytest_text]  # fmt: skip
    junit = parse_junit(junit_xml) if junit_xml else None
    report = None
    if junit is not None and junit.total > 0:
        report = junit
        if kind not in PYTHON_KINDS and any(f.line is None for f in junit.failures):
            report = _fill_locations(junit, parse_node_text(text))
    else:
        if junit is not None:  # Node's own report says no test ran; only another runner's text may differ
            text_parsers = [p for p in text_parsers if p is not parse_node_text]
        for parse in text_parsers:
            report = parse(text)
            if report is not None:
                break
        report = report or junit
    if report is not None and kind not in PYTHON_KINDS:
        report = _with_load_errors(report, text)
    if report is not None and kind in PYTHON_KINDS and report.parser is Parser.JUNIT:
        report = _subtest_names(report, text)
    if report is not None and root:
        report = replace(report, failures=[_relative(f, root) for f in report.failures])
    return report


_LOAD_ERROR = re.compile(
    r"^(?P<path>(?:file://)?/[^\s:]+):(?P<line>\d+)\n(?P<body>.*?)^\s*Node\.js v[\d.]+\s*$", re.MULTILINE | re.DOTALL
)


def _with_load_errors(report: TestReport, text: str) -> TestReport:
    """A test file that failed to load is a Node failure named by its path with the
    message "test failed"; the real error (a SyntaxError…) was printed by the child
    as ``<path>:<line>`` … ``Node.js vX``. Put that error into the failure."""
    plain = re.sub(r"^# ?", "", strip_ansi(text), flags=re.MULTILINE)  # TAP prints it as comments
    errors = {path_of(m["path"]): m for m in _LOAD_ERROR.finditer(plain)}
    if not errors:
        return report
    out = []
    for f in report.failures:
        m = errors.get(path_of(f.name)) or (errors.get(f.file) if f.file else None)
        if m is not None and f.message in ("", "test failed"):
            body = m["body"].strip()
            message = next(
                (l.strip() for l in body.splitlines() if re.match(r"^\w*(Error|Exception)\b", l.strip())), ""
            )
            f = failure(
                f.name, path_of(m["path"]), int(m["line"]), message or f.message, f"{m['path']}:{m['line']}\n{body}"
            )
        out.append(f)
    return replace(report, failures=out)


def _fill_locations(report: TestReport, text: TestReport | None) -> TestReport:
    if text is None:
        return report
    by_name: dict[str, Failure] = {}
    for f in text.failures:
        by_name.setdefault(f.name, f)
        by_name.setdefault(f.name.rsplit(" > ", 1)[-1], f)
    filled = []
    for f in report.failures:
        t = by_name.get(f.name) or by_name.get(f.name.rsplit(" > ", 1)[-1])
        if f.line is None and t is not None and t.line is not None:
            f = f.model_copy(update={"file": t.file, "line": t.line, "message": f.message or t.message})
        filled.append(f)
    return replace(report, failures=filled)


def _relative(f: Failure, root: str) -> Failure:
    """Paths under the workspace become relative (a file that failed to load is named by its path)."""
    prefix = root.rstrip("/") + "/"
    file = f.file[len(prefix) :] if f.file and f.file.startswith(prefix) else f.file
    name = path_of(f.name)[len(prefix) :] if path_of(f.name).startswith(prefix) else f.name
    message = f.message.replace("file://" + prefix, "").replace(prefix, "")  # absolute paths read as the workspace's
    return f.model_copy(update={"file": file, "name": name, "message": message})


_SUBFAILED = re.compile(r"^SUBFAILED\((?P<params>.*)\) (?P<nodeid>\S+)")


def _subtest_names(report: TestReport, text: str) -> TestReport:
    """Name junit's ``[subtest k]`` failures by the parameters pytest printed (``SUBFAILED(x=2) …``)."""
    printed: dict[str, list[str]] = {}
    for line in strip_ansi(text).splitlines():
        m = _SUBFAILED.match(line)
        if m:
            printed.setdefault(m["nodeid"].partition("::")[2], []).append(m["params"])
    out = []
    for f in report.failures:
        base, sep, k = f.name.rpartition(" [subtest ")
        params = printed.get(base, [])
        index = int(k.rstrip("]")) - 1 if sep and k.rstrip("]").isdigit() else -1
        if 0 <= index < len(params):
            f = f.model_copy(update={"name": f"{base} [{params[index]}]"})
        out.append(f)
    return replace(report, failures=out)
