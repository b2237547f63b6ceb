"""Jest's default reporter ("Tests: 1 failed, 3 passed, 4 total") and Vitest's ("Tests  1 failed | 3 passed (4)")."""

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
_VITEST_TESTS = re.compile(r"^Tests\s+(.*)\((\d+)\)\s*$")


def parse_jest_text(text: str) -> TestReport | None:
    """Jest ("Tests: 1 failed, 3 passed, 4 total") or Vitest ("Tests  1 failed | 3 passed (4)")."""
    text = strip_ansi(text)
    lines = text.splitlines()
    for line in reversed(lines):
        s = line.strip()
        m = _JEST_TESTS.match(s)
        if m:
            counts = {w: int(n) for n, w in re.findall(r"(\d+) (\w+)", m[1])}
            total = counts.get("total", 0)
            return _jest_report(counts, total, _jest_failures(lines), Parser.JEST_TEXT)
        m = _VITEST_TESTS.match(s)
        if m:
            counts = {w: int(n) for n, w in re.findall(r"(\d+) (\w+)", m[1])}
            return _jest_report(counts, int(m[2]), _vitest_failures(lines), Parser.VITEST_TEXT)
    return None


def _jest_report(counts: dict[str, int], total: int, failures: list[Failure], parser: Parser) -> TestReport:
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


def _vitest_failures(lines: list[str]) -> list[Failure]:
    out = []
    for i, line in enumerate(lines):
        m = re.match(r"^\s*FAIL\s+(\S+) > (.+)$", line)
        if not m:
            continue
        body = []
        for nxt in lines[i + 1 :]:
            if re.match(r"^\s*FAIL\s", nxt) or nxt.startswith("⎯"):
                break
            body.append(nxt)
        block = "\n".join(body).strip()
        loc = re.search(r"❯ (\S+?):(\d+):\d+", block)
        message = next((b.strip() for b in block.splitlines() if b.strip()), "")
        out.append(failure(m[2].strip(), loc[1] if loc else m[1], int(loc[2]) if loc else None,
                           message, block))  # fmt: skip
    return out


