"""Jest's default reporter: ``FAIL file`` headers, ``● suite › test`` blocks, and "Tests: 1 failed, 3 passed, 4 total".

A test file that cannot run ("● Test suite failed to run": a syntax error in it or
in what it imports) counts no test in jest's summary; kodr counts it as one failed
test named by the file, located at the syntax error when jest names one.
"""

from __future__ import annotations

import re

from kodr_core.results import Failure, Parser
from kodr_core.runners.report import (
    TestReport,
    dedent,
    failure,
    js_location,
    strip_ansi,
)

_JEST_TESTS = re.compile(r"^Tests:\s+(.*\d+ total)\s*$")
_FAIL_HEADER = re.compile(r"^\s*FAIL\s+(\S+)")
SUITE_FAILED = "Test suite failed to run"
#: "SyntaxError: /abs/src/calc.js: Unexpected token (2:0)" (babel) or "… (2:0)" after a path
SYNTAX_AT = re.compile(r"(?P<kind>\w*Error): (?P<path>/\S+?|\S+?\.[cm]?[jt]sx?): (?P<what>.*?) \((?P<line>\d+):\d+\)")


def parse_jest_text(text: str) -> TestReport | None:
    """Jest's default reporter ("Tests:       1 failed, 3 passed, 4 total"); None without that line."""
    lines = strip_ansi(text).splitlines()
    for line in reversed(lines):
        m = _JEST_TESTS.match(line.strip())
        if m:
            counts = {w: int(n) for n, w in re.findall(r"(\d+) (\w+)", m[1])}
            failures = _jest_failures(lines)
            suites = sum(1 for line in lines if line.strip() == f"● {SUITE_FAILED}")
            counts["failed"] = counts.get("failed", 0) + suites
            return report_of(counts, counts.get("total", 0) + suites, failures, Parser.JEST_TEXT)
    return None


def report_of(counts: dict[str, int], total: int, failures: list[Failure], parser: Parser) -> TestReport:
    failed = counts.get("failed", 0)
    passed = counts.get("passed", 0)
    skipped = counts.get("skipped", 0) + counts.get("todo", 0) + counts.get("pending", 0)
    return TestReport(passed, failed, skipped, total or passed + failed + skipped, failures, parser)


def _jest_failures(lines: list[str]) -> list[Failure]:
    out = []
    suite = None
    for i, line in enumerate(lines):
        header = _FAIL_HEADER.match(line)
        if header:
            suite = header[1]
        m = re.match(r"^\s*● (?!Console)(.+)$", line)
        if not m:
            continue
        body = []
        for nxt in lines[i + 1 :]:
            if re.match(r"^\s*● ", nxt) or re.match(r"^(Test Suites|Tests):", nxt.strip()):
                break
            body.append(nxt)
        block = dedent(body).strip()
        file, ln = js_location(block)
        message = next((b.strip() for b in block.splitlines() if b.strip()), "")
        name = m[1].strip().replace(" › ", " > ")
        if name == SUITE_FAILED and suite is not None:
            syntax = SYNTAX_AT.search(block)
            if syntax:
                file, ln = syntax["path"], int(syntax["line"])
                message = f"{syntax['kind']}: {syntax['what']} ({syntax['path']}:{syntax['line']})"
            out.append(failure(suite, file or suite, ln, message, block))
            continue
        out.append(failure(name, file, ln, message, block))
    return out
