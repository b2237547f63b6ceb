"""pytest's terminal output (normal or ``-q``): the fallback when no junit was written.

Subtests (pytest >= 9) count per subtest: each ``SUBFAILED(x=2) file::test`` is a
failed test named ``test [x=2]``; the parent's own "contains N failed subtests"
failure is not counted again.
"""

from __future__ import annotations

import re

from kodr_core.results import Parser
from kodr_core.runners.report import TestReport, failure, strip_ansi

_PYTEST_SUMMARY = re.compile(r"^=*\s*((?:\d+ [a-z]+(?:, )?)+|no tests ran)(?: in [\d.]+s(?: \([^)]*\))?)?\s*=*$")
_PYTEST_SHORT = re.compile(r"^(FAILED|ERROR|SUBFAILED\((?P<params>.*?)\)) (\S+?)(?: - (.*))?$")
_SUBTESTS_SUMMARY = re.compile(r"^contains \d+ failed subtests?$")


def parse_pytest_text(text: str) -> TestReport | None:
    """pytest's terminal output (normal or -q); None without a final summary line."""
    text = strip_ansi(text)
    lines = text.splitlines()
    summary = None
    for line in reversed(lines):
        m = _PYTEST_SUMMARY.match(line.strip())
        if m and (" in " in line or line.startswith("=")):
            summary = m[1]
            break
    if summary is None:
        return None
    counts: dict[str, int] = {}
    for n, word in re.findall(r"(\d+) ([a-z]+)", summary):
        counts[word] = counts.get(word, 0) + int(n)
    passed = counts.get("passed", 0) + counts.get("xpassed", 0)
    failed = counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0)
    skipped = counts.get("skipped", 0) + counts.get("xfailed", 0)
    sections = _pytest_sections(lines)
    failures = []
    for line in lines:
        m = _PYTEST_SHORT.match(line)
        if not m:
            continue
        nodeid, message = m[3], m[4] or ""
        if _SUBTESTS_SUMMARY.match(message):
            failed -= 1  # the parent of failed subtests: they are counted, it is not
            continue
        file, _, rest = nodeid.partition("::")
        name = rest or file
        params = m["params"]
        if params is not None:
            name = f"{name} [{params}]"
        block = (
            (sections.get(f"{rest.split('::')[-1]} ({params})") if params is not None else None)
            or sections.get(rest.replace("::", "."))
            or sections.get(rest.split("::")[-1])
            or (sections.get(file) if not rest else None)
            or ""
        )
        message = message or e_line(block)
        hits = re.findall(rf"^{re.escape(file)}:(\d+):", block, re.MULTILINE)
        failures.append(failure(name, file or None, int(hits[-1]) if hits else None,
                                message, block))  # fmt: skip
    failed = max(failed, len(failures))
    return TestReport(passed, failed, skipped, passed + failed + skipped, failures, Parser.PYTEST_TEXT)


def e_line(block: str) -> str:
    """The first ``E   …`` line of a pytest traceback: the exception as raised."""
    m = re.search(r"^E\s+(.+)$", block, re.MULTILINE)
    return m[1].strip() if m else ""


def _pytest_sections(lines: list[str]) -> dict[str, str]:
    """Title → body of the "____ test_x ____" blocks in FAILURES and ERRORS."""
    out: dict[str, str] = {}
    title: str | None = None
    body: list[str] = []
    for line in lines + ["=" * 10]:
        m = re.match(r"^_{3,} (?:ERROR at \w+ of |ERROR collecting )?(.+?) _{3,}$", line)
        if m or line.startswith("="):
            if title is not None:
                out.setdefault(title, "\n".join(body).strip())
            title, body = (m[1] if m else None), []
        elif title is not None:
            body.append(line)
    return out
