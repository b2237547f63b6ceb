"""mocha's default ``spec`` reporter: "4 passing (7ms)", "1 pending", "1 failing", then numbered failures.

A failure block is ``  1) suite`` / ``       test:`` (the title over several
indented lines, ending with a colon), the error, then its stack; the line is the
test body's frame. A run that dies loading a file prints "Exception during run:
<path>:<line>" and no summary: that is one failure at that location (a syntax
error in a test or implementation file is what a repair must fix), named by
its path as Node names a test file that failed to load.
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

_COUNT = re.compile(r"^\s*(\d+) (passing|pending|failing)(?: \([\d.]+m?s\))?\s*$")
_HEAD = re.compile(r"^(\s*)(\d+)\) (.*)$")
_EXCEPTION = re.compile(r"^\s*Exception during run: (?P<path>.+?):(?P<line>\d+)\s*$")
_ERROR_LINE = re.compile(r"^\s*(?:\w+\.)*\w*(?:Error|Exception)\b.*")


def parse_mocha_text(text: str) -> TestReport | None:
    """mocha spec output; None when there is no mocha summary or load failure in it."""
    lines = strip_ansi(text).splitlines()
    counts = {"passing": 0, "pending": 0, "failing": 0}
    found = False
    for line in lines:
        m = _COUNT.match(line)
        if m:
            counts[m[2]] += int(m[1])
            found = found or m[2] == "passing" or m[2] == "failing"
    if not found:
        return _load_failure(lines)
    failures = _failures(lines)
    failed = max(counts["failing"], len(failures))
    return TestReport(counts["passing"], failed, counts["pending"],
                      counts["passing"] + failed + counts["pending"], failures, Parser.MOCHA_TEXT)  # fmt: skip


def _failures(lines: list[str]) -> list[Failure]:
    try:
        start = max(i for i, l in enumerate(lines) if (m := _COUNT.match(l)) and m[2] == "failing")
    except ValueError:
        return []
    out: list[Failure] = []
    i = start + 1
    while i < len(lines):
        m = _HEAD.match(lines[i])
        if not m:
            i += 1
            continue
        title = [m[3].strip()]
        j = i + 1
        while not title[-1].endswith(":") and j < len(lines) and lines[j].strip() and not _HEAD.match(lines[j]):
            title.append(lines[j].strip())
            j += 1
        name = " > ".join(t.rstrip(":") for t in title if t.rstrip(":"))
        body: list[str] = []
        while j < len(lines) and not _HEAD.match(lines[j]):
            body.append(lines[j])
            j += 1
        block = dedent([b for b in body if b.strip() or body]).strip()
        file, line = js_location(block)
        message_lines = [b.strip() for b in block.splitlines() if b.strip() and not b.strip().startswith("at ")]
        out.append(failure(name, file, line, "\n".join(message_lines[:8]), block))
        i = j
    return out


def _load_failure(lines: list[str]) -> TestReport | None:
    for i, line in enumerate(lines):
        m = _EXCEPTION.match(line)
        if m:
            rest = "\n".join(lines[i + 1 :]).strip()
            message = next(
                (l.strip() for l in lines[i + 1 :] if _ERROR_LINE.match(l)), "mocha could not load the tests"
            )
            path = path_of(m["path"])
            f = failure(path, path, int(m["line"]), message, f"Exception during run: {path}:{m['line']}\n{rest}")
            return TestReport(0, 1, 0, 1, [f], Parser.MOCHA_TEXT)
    return None
