"""Vitest's default reporter (``vitest run``): "Tests  1 failed | 3 passed (4)" and ``FAIL file > suite > test`` blocks."""

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
            return report_of(counts, int(m[2]), _vitest_failures(lines), Parser.VITEST_TEXT)
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


