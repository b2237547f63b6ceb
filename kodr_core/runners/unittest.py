"""``python -m unittest``: "Ran 3 tests in 0.001s", then "OK" or "FAILED (failures=1, errors=1)".

Failure blocks are ``FAIL: test_x (module.Class.test_x)`` (or ``ERROR:``) over a
``----`` rule and a native traceback; the line is the traceback's last frame in
the test's file, else its last frame.
"""

from __future__ import annotations

import re

from kodr_core.results import Failure, Parser
from kodr_core.runners.report import TestReport, failure, strip_ansi

_RAN = re.compile(r"^Ran (\d+) tests? in [\d.]+s$")
_RESULT = re.compile(r"^(OK|FAILED)(?: \((.*)\))?$")
_HEAD = re.compile(r"^(FAIL|ERROR): (?P<test>\S+) \((?P<where>[^)]*)\)")
_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+)')


def parse_unittest_text(text: str) -> TestReport | None:
    """unittest's text runner output; None without its "Ran N tests" line and verdict."""
    lines = strip_ansi(text).splitlines()
    ran = next((int(m[1]) for line in lines if (m := _RAN.match(line.strip()))), None)
    verdict = next((m for line in reversed(lines) if (m := _RESULT.match(line.strip()))), None)
    if ran is None or verdict is None:
        return None
    counts = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", verdict[2] or "")}
    failed = counts.get("failures", 0) + counts.get("errors", 0) + counts.get("unexpected_successes", 0)
    skipped = counts.get("skipped", 0) + counts.get("expected_failures", 0)
    failures = _failures(lines)
    return TestReport(max(ran - failed - skipped, 0), failed, skipped, ran, failures, Parser.UNITTEST_TEXT)


def _failures(lines: list[str]) -> list[Failure]:
    out: list[Failure] = []
    for i, line in enumerate(lines):
        m = _HEAD.match(line)
        if not m:
            continue
        body: list[str] = []
        for nxt in lines[i + 1 :]:
            if _HEAD.match(nxt) or nxt.startswith("=" * 10) or _RAN.match(nxt.strip()):
                break
            body.append(nxt)
        block = "\n".join(l for l in body if not re.match(r"^-{10,}$", l)).strip()
        frames = [(f["file"], int(f["line"])) for f in (_FRAME.match(b) for b in body) if f]
        module = m["where"].rsplit(".", 2)[0].replace(".", "/") + ".py" if m["where"] else ""
        own = [fr for fr in frames if fr[0].endswith(module)] or frames
        file, line_no = own[-1] if own else (None, None)
        message = next((b.strip() for b in reversed(body) if b.strip() and not b.startswith(" ")
                        and not re.match(r"^-{10,}$", b)), "")  # fmt: skip
        name = f"{m['where']}" if "." in m["where"] else m["test"]
        out.append(failure(name, file, line_no, message, block))
    return out
