"""tape's TAP: tests are the ``# name`` headers, not the numbered assertions.

tape prints ``# adds`` for each test, then one ``ok N msg`` / ``not ok N msg``
line per assertion (no `` - `` before the message), and closes with
``1..N``, ``# tests N`` (assertions), ``# pass``, ``# fail``. kodr counts tests: a
test with any failing assertion failed, and its failure is the first failing
assertion (its ``at:`` frame gives the line). When a test throws, Node kills
tape before the plan: the test that was running failed with the crash's error
and stack (printed to stderr), and tests after it never ran (not counted).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kodr_core.results import Failure, Parser
from kodr_core.runners.report import (
    TestReport,
    failure,
    js_location,
    path_of,
    strip_ansi,
)

_ASSERT = re.compile(r"^(not ok|ok) \d+(?: -)?(?: (?P<msg>.*?))?(?:\s+#\s+(?P<dir>SKIP|TODO)\b.*)?$")
_PLAN = re.compile(r"^1\.\.\d+$")
_SUMMARY = re.compile(r"^# (?:tests|pass|fail|todo|skip) +\d+$|^# ok$")
_AT = re.compile(r"^\s+at: (?P<at>.+)$")
_CRASH_ERROR = re.compile(r"^(?:\w+\.)*\w*(?:Error|Exception)\b.*")


@dataclass
class _Test:
    name: str
    asserts: int = 0
    skipped: int = 0
    first_failure: Failure | None = None
    details: list[str] = field(default_factory=list)


def is_tape(text: str) -> bool:
    """tape's TAP: a TAP header, test headers, and none of Node's own TAP markers."""
    return (text.lstrip().startswith("TAP version") and "# Subtest:" not in text
            and not re.search(r"^# (?:suites|cancelled|duration_ms) ", text, re.MULTILINE))  # fmt: skip


def parse_tape_text(text: str) -> TestReport | None:
    """tape output (stdout, then stderr); None when it is not tape's TAP."""
    text = strip_ansi(text)
    if not is_tape(text):
        return None
    lines = text.splitlines()
    tests: list[_Test] = []
    planned = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if _PLAN.match(line):
            planned = True
        elif line.startswith("# ") and not planned and not _SUMMARY.match(line):
            tests.append(_Test(line[2:].strip()))
        elif (m := _ASSERT.match(line)) and tests:
            t = tests[-1]
            t.asserts += 1
            if m["dir"] == "SKIP":
                t.skipped += 1
            elif m[1] == "not ok" and m["dir"] != "TODO" and t.first_failure is None:
                t.first_failure = _assertion_failure(t.name, m["msg"] or "", _yaml_block(lines, i + 1))
        i += 1
    if not tests:
        return None
    if not planned and tests[-1].first_failure is None:
        tests[-1].first_failure = _crash_failure(tests[-1].name, lines)
    failures = [t.first_failure for t in tests if t.first_failure is not None]
    skipped = sum(1 for t in tests if t.first_failure is None and t.asserts and t.skipped == t.asserts)
    failed = len(failures)
    return TestReport(len(tests) - failed - skipped, failed, skipped, len(tests), failures, Parser.TAP)


def _yaml_block(lines: list[str], start: int) -> list[str]:
    if start >= len(lines) or lines[start].strip() != "---":
        return []
    out = []
    for line in lines[start + 1 :]:
        if line.strip() == "...":
            break
        out.append(line)
    return out


def _assertion_failure(test: str, message: str, yaml: list[str]) -> Failure:
    fields = {}
    for y in yaml:
        m = re.match(r"^\s+(operator|expected|actual): +(.*)$", y)
        if m:
            fields[m[1]] = m[2].strip()
    at = next((m["at"] for y in yaml if (m := _AT.match(y))), "")
    file, line = js_location("at " + at) if at else (None, None)
    if file is None:
        file, line = js_location("\n".join(yaml))
    detail = f" (expected {fields['expected']}, actual {fields['actual']})" if "expected" in fields else ""
    stack = "\n".join(y.strip() for y in yaml)
    return failure(test, file, line, f"{message}{detail}", stack)


def _crash_failure(test: str, lines: list[str]) -> Failure:
    """The test tape was running when its process died: the crash's error and stack."""
    start = next((i for i, l in enumerate(lines) if _CRASH_ERROR.match(l.strip()) and not l.startswith((" ", "#"))),
                 None)  # fmt: skip
    if start is None:
        return failure(test, None, None, "tape exited before the test finished", "")
    block = lines[start:]
    end = next((k for k, l in enumerate(block) if l.startswith("Node.js v")), len(block))
    stack = "\n".join(block[:end]).strip()
    file, line = js_location(stack)
    head = "\n".join(lines[max(0, start - 5) : start]).strip()  # "<path>:<line>", the source line, the caret
    if file is None and (m := re.match(r"^(?P<p>\S+):(?P<l>\d+)$", head.splitlines()[0] if head else "")):
        file, line = path_of(m["p"]), int(m["l"])
    return failure(test, file, line, lines[start].strip(), f"{head}\n{stack}".strip())
