"""What every runner's reader produces: counts and failures, and the stack-frame rules they share.

Counting rules, the same for every reader: ``failed`` includes errors (pytest
setup errors, collection errors, a test that crashed its runner) and Node's
``cancelled``; ``skipped`` includes todo, pending and xfail; ``total`` is every
test the runner reported, counted as tests (never assertions: tape), and per
subtest where a runner has them (pytest). ``total == 0`` means no test ran.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote

from kodr_core.results import Failure, Parser

STACK_CHARS = 4000
MESSAGE_CHARS = 1000
LINE_CHARS = 2000  # no reader needs more of one line; longer lines are hostile or noise


@dataclass(frozen=True)
class TestReport:
    __test__ = False  # not a pytest test class

    passed: int
    failed: int
    skipped: int
    total: int
    failures: list[Failure] = field(default_factory=list)
    parser: Parser | None = None


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def bounded_lines(text: str, limit: int = LINE_CHARS) -> str:
    """Each line cut to ``limit`` characters and stripped of trailing blanks.

    The output comes from code kodr runs: this keeps every reader's regular
    expressions linear in practice, whatever one line holds.
    """
    return "\n".join(line[:limit].rstrip() for line in text.split("\n"))


def tap_directive(description: str) -> tuple[str, str | None]:
    """A TAP description without its ``# TODO`` / ``# SKIP`` directive, and the directive.

    Plain string search, not a regular expression: descriptions come from the
    workspace and may hold long runs of blanks.
    """
    upper = description.upper()
    for directive in ("TODO", "SKIP"):
        k = upper.rfind("# " + directive)
        if k >= 0 and (k == 0 or description[k - 1].isspace()):
            return description[:k].rstrip(), directive
    return description.rstrip(), None


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def clip(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "…"


def path_of(p: str) -> str:
    """A path as printed by a runner: ``file://`` URLs become paths."""
    return unquote(p[len("file://") :]) if p.startswith("file://") else p


# -- stack frames ---------------------------------------------------------------

_JS_FRAME = re.compile(r"^\s*at (?:(?P<fn>.*?) \()?(?P<loc>(?:file://)?[^()\s]+?):(?P<line>\d+):(?P<col>\d+)\)?\s*$")
_TESTISH = re.compile(r"(^|/)(test|tests|__tests__|spec)/|[._-](test|spec)\.[cm]?[jt]sx?$|(^|/)test[-_.]")


def _testish(path: str) -> bool:
    """A test file by its name or its folder: judged on the last two segments only, so a
    workspace that itself lives under a test-like folder (``/tmp/test_x/…``) is no evidence."""
    return bool(_TESTISH.search("/".join(path.replace("\\", "/").split("/")[-2:])))


def js_location(stack: str) -> tuple[str | None, int | None]:
    """The most useful user frame of a JS stack: the test body, else a test file, else the first."""
    frames = []
    for line in stack.splitlines():
        m = _JS_FRAME.match(line)
        if not m:
            continue
        loc = m["loc"]
        if loc.startswith(("node:", "internal/")) or "/node_modules/" in loc:
            continue
        frames.append((m["fn"] or "", path_of(loc), int(m["line"])))
    if not frames:
        return None, None
    picks: tuple[Callable[[str, str], bool], ...] = (
        lambda fn, path: fn.startswith("TestContext."),
        lambda fn, path: _testish(path),
        lambda fn, path: True,
    )
    for pick in picks:
        for fn, path, number in frames:
            if pick(fn, path):
                return path, number
    return None, None  # pragma: no cover


def dedent(lines: list[str]) -> str:
    lines = list(lines)
    while lines and not lines[-1].strip():
        lines.pop()
    indents = [len(l) - len(l.lstrip()) for l in lines if l.strip()]
    cut = min(indents) if indents else 0
    return "\n".join(l[cut:] for l in lines)


def failure(name: str, file: str | None, line: int | None, message: str, stack: str) -> Failure:
    """A failure with its message and stack clipped to their bounds."""
    return Failure(
        name=name, file=file, line=line, message=clip(message, MESSAGE_CHARS), stack=clip(stack, STACK_CHARS)
    )
