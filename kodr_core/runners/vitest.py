"""Vitest's default reporter (``vitest run``): "Tests  1 failed | 3 passed (4)" and ``FAIL file > suite > test`` blocks.

A test file that cannot run (``FAIL  file [ file ]``, e.g. an import with a syntax
error) counts no test in vitest's summary; kodr counts it as one failed test named
by the file, located at the ``File: path:line:col`` vitest names.
"""

from __future__ import annotations

import re

from kodr_core.results import Failure, Parser
from kodr_core.runners.jest import report_of
from kodr_core.runners.report import TestReport, failure, strip_ansi

_VITEST_TESTS = re.compile(r"^Tests\s+(.*)\((\d+)\)\s*$")


def parse_vitest_text(text: str) -> TestReport | None:
    """Vitest output; None without its "Tests … (N)" line."""
    lines = strip_ansi(text).splitlines()
    for line in reversed(lines):
        m = _VITEST_TESTS.match(line.strip())
        if m:
            counts = {w: int(n) for n, w in re.findall(r"(\d+) (\w+)", m[1])}
            failures = _vitest_failures(lines)
            suites = len(_suite_failures(lines))
            counts["failed"] = counts.get("failed", 0) + suites
            return report_of(counts, int(m[2]) + suites, failures + _suite_failures(lines), Parser.VITEST_TEXT)
    return None


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


_SUITE = re.compile(r"^\s*FAIL\s+(\S+) \[ .* \]\s*$")
_FILE_AT = re.compile(r"^\s*File: (?P<path>\S+?):(?P<line>\d+):\d+\s*$")


def _suite_failures(lines: list[str]) -> list[Failure]:
    out = []
    for i, line in enumerate(lines):
        m = _SUITE.match(line)
        if not m:
            continue
        body = []
        for nxt in lines[i + 1 :]:
            if re.match(r"^\s*FAIL\s", nxt) or nxt.startswith("⎯"):
                break
            body.append(nxt)
        block = "\n".join(body).strip()
        at = next((f for f in (_FILE_AT.match(b) for b in body) if f), None)
        message = next((b.strip() for b in block.splitlines() if b.strip()), "")
        out.append(failure(m[1], at["path"] if at else m[1], int(at["line"]) if at else None, message, block))
    return out
