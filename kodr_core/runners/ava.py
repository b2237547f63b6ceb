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
    path_of,
    strip_ansi,
)

_PASS = re.compile(r"^ *✔ (?!\[)(.+?)(?: \(\d+(?:\.\d+)?m?s\))?$")  # lines come right-stripped
_FAIL = re.compile(r"^ *✘ (?:\[(?:fail|timeout|exit)\]: )?(.+)$")
_SKIP = re.compile(r"^ *- \[(?:skip|todo)\]: (.+)$")
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
    failures = _uncaught(lines) + _details(lines, failed_names)
    failed = max(len(failed_names), len(failures))
    return TestReport(passed, failed, skipped, passed + failed + skipped, failures, Parser.AVA_TEXT)


_UNCAUGHT = re.compile(r"^ *Uncaught exception in (?P<file>\S+)$")
_ORIGIN = re.compile(r"^ *(?P<path>(?:file://)?/\S+?|\S+\.[cm]?[jt]sx?):(?P<line>\d+)$")


def _uncaught(lines: list[str]) -> list[Failure]:
    """A test file that threw outside any test (e.g. a syntax error in what it imports): one
    failure named by the file, at the error's origin when ava printed one."""
    out: list[Failure] = []
    for i, line in enumerate(lines):
        m = _UNCAUGHT.match(line)
        if not m:
            continue
        body: list[str] = []
        for nxt in lines[i + 1 :]:
            if _PASS.match(nxt) or _FAIL.match(nxt) or _UNCAUGHT.match(nxt) or _RULE.match(nxt):
                break
            body.append(nxt)
        origins = [o for o in (_ORIGIN.match(b) for b in body) if o]
        origin = origins[-1] if origins else None  # the last: where the error was thrown
        error = next((b.strip() for b in body if _ERROR.match(b.strip())), "uncaught exception")
        file, at = (path_of(origin["path"]), int(origin["line"])) if origin else (m["file"], None)
        out.append(failure(m["file"], file, at, error, dedent(body).strip()))
    return out


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
