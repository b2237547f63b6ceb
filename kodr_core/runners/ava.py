"""ava's default reporter: ``✔ file › test`` / ``✘ [fail]: file › test …`` lines, then one detail block per failure.

Counts are the marked lines (ava's closing summary says only "1 test failed"
when anything failed); ``- [skip]:`` and ``- [todo]:`` are skipped. Detail blocks
follow the list, separated by ``─`` lines: the title, the location ava gives
(``test/calc.js:4``), and the difference or the thrown error with its stack.
"""

from __future__ import annotations

import itertools
import re

from kodr_core.results import Failure, Parser
from kodr_core.runners.report import (
    TestReport,
    dedent,
    failure,
    js_location,
    strip_ansi,
)

_PASS = re.compile(r"^\s*✔ (?!\[)(.+?)(?: \(\d+(?:\.\d+)?m?s\))?\s*$")
_FAIL = re.compile(r"^\s*✘ (?:\[(?:fail|timeout|exit)\]: )?(.+?)\s*$")
_SKIP = re.compile(r"^\s*- \[(?:skip|todo)\]: (.+?)\s*$")
_SUMMARY = re.compile(r"^\s*\d+ (?:tests? (?:passed|failed|skipped|todo)|known failures?|uncaught exceptions?"
                      r"|unhandled rejections?)\s*$")  # fmt: skip
_RULE = re.compile(r"^\s*─+\s*$")
_LOCATION = re.compile(r"^(?P<file>[^\s:]+\.[cm]?[jt]sx?):(?P<line>\d+)$")
_ERROR = re.compile(r"^(?:\w+\.)*\w*(?:Error|Exception)\b: .*")


def parse_ava_text(text: str) -> TestReport | None:
    """ava output; None without ava's summary line."""
    lines = strip_ansi(text).splitlines()
    if not any(_SUMMARY.match(line) for line in lines):
        return None
    passed = sum(1 for line in lines if _PASS.match(line))
    failed_names = [m[1] for line in lines if (m := _FAIL.match(line))]
    skipped = sum(1 for line in lines if _SKIP.match(line))
    failures = _details(lines, failed_names)
    failed = max(len(failed_names), len(failures))
    return TestReport(passed, failed, skipped, passed + failed + skipped, failures, Parser.AVA_TEXT)


def _details(lines: list[str], failed_names: list[str]) -> list[Failure]:
    rules = [i for i, line in enumerate(lines) if _RULE.match(line)]
    out: list[Failure] = []
    for a, b in itertools.pairwise(rules):
        block = dedent(lines[a + 1 : b]).strip()
        if not block:
            continue
        title, _, rest = block.partition("\n")
        if not any(n.startswith(title.strip()) or title.strip().startswith(n) for n in failed_names) and failed_names:
            continue
        body = [l for l in rest.splitlines()]
        loc = next((m for l in body if (m := _LOCATION.match(l.strip()))), None)
        file, line = (loc["file"], int(loc["line"])) if loc else js_location(rest)
        if loc is None and file is None:
            m = re.search(r"› (\S+?):(\d+):\d+", rest)
            file, line = (m[1], int(m[2])) if m else (None, None)
        error = next((l.strip() for l in body if _ERROR.match(l.strip())), None)
        if error is None:
            text = [l.strip() for l in body if l.strip() and not re.match(r"^\s*\d+:", l) and not _LOCATION.match(l.strip())
                    and not l.strip().startswith("›")]  # fmt: skip
            error = " ".join(text[:6])
        out.append(failure(title.strip().replace(" › ", " > "), file, line, error, rest.strip()))
    return out
