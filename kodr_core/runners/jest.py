"""Jest's default reporter: ``FAIL file`` headers, ``● suite › test`` blocks, and "Tests: 1 failed, 3 passed, 4 total"."""

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


def parse_jest_text(text: str) -> TestReport | None:
    """Jest's default reporter ("Tests:       1 failed, 3 passed, 4 total"); None without that line."""
    lines = strip_ansi(text).splitlines()
    for line in reversed(lines):
        m = _JEST_TESTS.match(line.strip())
        if m:
            counts = {w: int(n) for n, w in re.findall(r"(\d+) (\w+)", m[1])}
            return report_of(counts, counts.get("total", 0), _jest_failures(lines), Parser.JEST_TEXT)
    return None


def report_of(counts: dict[str, int], total: int, failures: list[Failure], parser: Parser) -> TestReport:
    failed = counts.get("failed", 0)
    passed = counts.get("passed", 0)
    skipped = counts.get("skipped", 0) + counts.get("todo", 0) + counts.get("pending", 0)
    return TestReport(passed, failed, skipped, total or passed + failed + skipped, failures, parser)


def _jest_failures(lines: list[str]) -> list[Failure]:
    out = []
    for i, line in enumerate(lines):
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
        out.append(failure(m[1].strip().replace(" › ", " > "), file, ln,
                           message, block))  # fmt: skip
    return out
