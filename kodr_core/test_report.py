"""Turn test-runner output into honest counts and failures, and into tests.json.

Pure functions over strings. Structured output (junit XML, which pytest and
Node's test runner both write) is preferred; the text parsers are the fallback
for runners that wrote none (jest, vitest, an npm script with its own reporter)
and fill in locations junit lacks (Node 20's junit has no file/line attributes).

Counting rules, the same for every parser: ``failed`` includes errors (pytest
setup errors, collection errors) and Node's ``cancelled``; ``skipped`` includes
todo and xfail; ``total`` is every test the runner reported. A report with
``total == 0`` means no test ran, which :func:`build_tests_json` never calls ok.
"""

from __future__ import annotations

import re
import shlex
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from typing import Any, Sequence
from urllib.parse import unquote

from kodr_core.ports import ProcessResult

STACK_CHARS = 4000
MESSAGE_CHARS = 1000
TAIL_CHARS = 16_000
MAX_FAILURES = 100


@dataclass(frozen=True)
class Failure:
    name: str
    file: str | None = None
    line: int | None = None
    message: str = ""
    stack: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "file": self.file, "line": self.line,
                "message": self.message, "stack": self.stack}  # fmt: skip


@dataclass(frozen=True)
class TestReport:
    __test__ = False  # not a pytest test class

    passed: int
    failed: int
    skipped: int
    total: int
    failures: list[Failure] = field(default_factory=list)
    parser: str = ""


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def _clip(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "…"


def _path(p: str) -> str:
    """A path as printed by a runner: ``file://`` URLs become paths."""
    return unquote(p[len("file://") :]) if p.startswith("file://") else p


# -- stack frames ---------------------------------------------------------------

_JS_FRAME = re.compile(r"^\s*at (?:(?P<fn>.*?) \()?(?P<loc>(?:file://)?[^()\s]+?):(?P<line>\d+):(?P<col>\d+)\)?\s*$")
_TESTISH = re.compile(r"(^|/)(test|tests|__tests__|spec)/|[._-](test|spec)\.[cm]?[jt]sx?$|(^|/)test[-_.]")


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
        frames.append((m["fn"] or "", _path(loc), int(m["line"])))
    if not frames:
        return None, None
    for pick in (
        lambda f: f[0].startswith("TestContext."),
        lambda f: bool(_TESTISH.search(f[1])),
        lambda f: True,
    ):
        for fn, path, line in frames:
            if pick((fn, path, line)):
                return path, line
    return None, None  # pragma: no cover


# -- junit --------------------------------------------------------------------------


def parse_junit(xml_text: str) -> TestReport | None:
    """pytest (xunit1/xunit2) or Node junit XML; None if it is not junit we can read.

    A DOCTYPE is refused: the file is written by code kodr runs, and entity
    declarations are the way to make an XML parser blow up.
    """
    if not xml_text or not xml_text.strip() or "<!DOCTYPE" in xml_text or "<!ENTITY" in xml_text:
        return None
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError:
        return None
    if root.tag not in ("testsuites", "testsuite"):
        return None
    pytest_style = root.get("name") == "pytest tests" or any(
        s.get("name") == "pytest" for s in root.iter("testsuite")
    ) or any(c.get("file") for c in root.iter("testcase"))
    passed = failed = skipped = 0
    failures: list[Failure] = []

    def walk(node: ET.Element, suites: list[str]) -> None:
        nonlocal passed, failed, skipped
        for child in node:
            if child.tag == "testsuite":
                name = child.get("name") or ""
                walk(child, suites if pytest_style or not name else [*suites, name])
            elif child.tag == "testcase":
                bad = child.find("failure")
                if bad is None:
                    bad = child.find("error")
                if bad is not None:
                    failed += 1
                    failures.append(_junit_failure(child, bad, suites, pytest_style))
                elif child.find("skipped") is not None:
                    skipped += 1
                elif not pytest_style and _is_file_placeholder(child.get("name") or ""):
                    continue  # Node reports a test file that defines no test as one "passing" case
                else:
                    passed += 1

    walk(root, [])
    return TestReport(passed, failed, skipped, passed + failed + skipped, failures, "junit")


_SCRIPT_FILE = re.compile(r"[\\/][^\\/]+\.(?:[cm]?js|[cm]?ts|jsx|tsx)$")


def _is_file_placeholder(name: str) -> bool:
    """A testcase named by a script's path is Node's stand-in for the file, not a test."""
    return bool(_SCRIPT_FILE.search(name))


def _junit_failure(case: ET.Element, bad: ET.Element, suites: list[str], pytest_style: bool) -> Failure:
    name = case.get("name") or "?"
    text = bad.text or ""
    message = bad.get("message") or text.strip().split("\n", 1)[0]
    if pytest_style:
        file = case.get("file")
        cls = case.get("classname") or ""
        module = (file or "").removesuffix(".py").replace("/", ".")
        if module and cls.startswith(module + "."):
            name = cls[len(module) + 1 :].replace(".", "::") + "::" + name
        if message == "collection failure" and _pytest_e_line(text):
            message = f"collection failure: {_pytest_e_line(text)}"
        line = None
        if file:
            hits = re.findall(rf"^{re.escape(file)}:(\d+):", text, re.M)
            line = int(hits[-1]) if hits else (int(case.get("line")) + 1 if (case.get("line") or "").isdigit() else None)
        return Failure(name, file, line, _clip(message, MESSAGE_CHARS), _clip(text, STACK_CHARS))
    file, line = js_location(text)
    if file is None and (name.startswith("/") or name.startswith("file://")):
        file = _path(name)  # Node reports a file that failed to load under its path
    full = " > ".join([*suites, name])
    return Failure(full, file, line, _clip(message, MESSAGE_CHARS), _clip(text, STACK_CHARS))


# -- Node text: TAP and spec ------------------------------------------------------------

_SUMMARY = re.compile(r"^(?:#|ℹ)\s+(tests|pass|fail|cancelled|skipped|todo)\s+(\d+)\s*$")


def parse_node_text(text: str) -> TestReport | None:
    """Node's TAP or spec reporter output; None when there is no Node summary in it.

    Counts come from the closing summary (``# pass 3`` in TAP, ``ℹ pass 3`` in
    spec), summed when a script ran the runner more than once.
    """
    text = strip_ansi(text)
    lines = text.splitlines()
    counts = {k: 0 for k in ("tests", "pass", "fail", "cancelled", "skipped", "todo")}
    found = False
    for line in lines:
        m = _SUMMARY.match(line.strip())
        if m:
            counts[m[1]] += int(m[2])
            found = m[1] == "tests" or found
    if not found:
        return None
    failures = _tap_failures(lines) + _spec_failures(lines)
    return TestReport(
        passed=counts["pass"],
        failed=counts["fail"] + counts["cancelled"],
        skipped=counts["skipped"] + counts["todo"],
        total=counts["tests"],
        failures=failures,
        parser="node-text",
    )


_TAP_SUBTEST = re.compile(r"^(\s*)# Subtest: (.*)$")
_TAP_NOT_OK = re.compile(r"^(\s*)not ok \d+ - (.*?)(?:\s+#\s+(?:TODO|SKIP)\b.*)?$")


def _tap_failures(lines: list[str]) -> list[Failure]:
    """``not ok`` lines (not suites, not TODO) with their YAML diagnostics."""
    out: list[Failure] = []
    parents: list[str] = []
    for i, line in enumerate(lines):
        m = _TAP_SUBTEST.match(line)
        if m:
            depth = len(m[1]) // 4
            parents = parents[:depth] + [m[2]]
            continue
        m = _TAP_NOT_OK.match(line)
        if not m or re.search(r"#\s+TODO\b", line):
            continue
        depth = len(m[1]) // 4
        yaml = _tap_yaml(lines, i + 1, len(m[1]))
        if yaml.get("type") == "suite" or yaml.get("failureType") == "subtestsFailed":
            continue
        stack = yaml.get("stack", "")
        file, line_no = js_location("\n".join("at " + s for s in stack.splitlines()))
        loc = re.match(r"^(.*):(\d+):\d+$", yaml.get("location", ""))
        if line_no is None and loc:
            file, line_no = _path(loc[1]), int(loc[2])
        message = yaml.get("error", "")
        name = " > ".join([*parents[:depth], m[2]])
        out.append(Failure(name, file, line_no, _clip(message, MESSAGE_CHARS),
                           _clip(f"{message}\n{stack}", STACK_CHARS)))  # fmt: skip
    return out


def _tap_yaml(lines: list[str], start: int, indent: int) -> dict[str, str]:
    """The few keys we need from a TAP YAML diagnostic block (scalars and ``|-`` blocks)."""
    if start >= len(lines) or lines[start].strip() != "---":
        return {}
    out: dict[str, str] = {}
    key_indent = indent + 2
    i = start + 1
    while i < len(lines) and lines[i].strip() != "...":
        line = lines[i]
        m = re.match(rf"^ {{{key_indent}}}(\w+):\s?(.*)$", line)
        i += 1
        if not m:
            continue
        key, value = m[1], m[2]
        if value in ("|-", "|", ">-", ">"):
            block = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" " * (key_indent + 2))):
                if lines[i].strip() == "...":
                    break
                block.append(lines[i][key_indent + 2 :])
                i += 1
            value = "\n".join(block).strip()
        elif len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1].replace("''", "'")
        out[key] = value
    return out


_SPEC_AT = re.compile(r"^test at (.+?):(\d+):(\d+)$")
_SPEC_FAIL = re.compile(r"^(\s*)✖ (.*?)(?: \([\d.]+m?s\))?(?: # .*)?$")
_SPEC_ANY = re.compile(r"^(\s*)(?:✔|✖|﹣|▶|⚠) (.*?)(?: \([\d.]+m?s\))?(?: # .*)?$")


def _spec_failures(lines: list[str]) -> list[Failure]:
    """Failures from the spec reporter's closing "✖ failing tests:" section.

    The location is the test body's frame in the stack (as for junit), else the
    test's declaration ("test at file:line:col").
    """
    try:
        start = max(i for i, l in enumerate(lines) if l.strip() == "✖ failing tests:")
    except ValueError:
        return []
    full_names = _spec_full_names(lines[:start])
    out: list[Failure] = []
    i = start + 1
    while i < len(lines):
        at = _SPEC_AT.match(lines[i].strip())
        fail = _SPEC_FAIL.match(lines[i + 1]) if at and i + 1 < len(lines) else None
        if not (at and fail):
            i += 1
            continue
        body: list[str] = []
        j = i + 2
        while j < len(lines) and not _SPEC_AT.match(lines[j].strip()):
            body.append(lines[j])
            j += 1
        block = _dedent(body)
        message_lines = []
        for b in block.splitlines():
            if b.strip().startswith("at "):
                break
            message_lines.append(b)
        leaf = fail[2]
        name = full_names.get(leaf, leaf)
        file, line_no = js_location(block)
        if line_no is None:
            file, line_no = _path(at[1]), int(at[2])
        out.append(Failure(name, file, line_no,
                           _clip("\n".join(message_lines).strip().strip("'"), MESSAGE_CHARS),
                           _clip(block, STACK_CHARS)))  # fmt: skip
        i = j
    return out


def _spec_full_names(lines: list[str]) -> dict[str, str]:
    """Leaf name → "suite > leaf", from the indentation of the spec body."""
    out: dict[str, str] = {}
    suites: list[tuple[int, str]] = []
    for line in lines:
        m = _SPEC_ANY.match(line)
        if not m:
            continue
        indent = len(m[1])
        suites = [(d, n) for d, n in suites if d < indent]
        if line.strip().startswith("▶"):
            suites.append((indent, m[2]))
        elif line.strip().startswith("✖") and suites:
            out.setdefault(m[2], " > ".join([n for _, n in suites] + [m[2]]))
    return out


def _dedent(lines: list[str]) -> str:
    lines = list(lines)
    while lines and not lines[-1].strip():
        lines.pop()
    indents = [len(l) - len(l.lstrip()) for l in lines if l.strip()]
    cut = min(indents) if indents else 0
    return "\n".join(l[cut:] for l in lines)


# -- pytest text ------------------------------------------------------------------------

_PYTEST_SUMMARY = re.compile(
    r"^=*\s*((?:\d+ [a-z]+(?:, )?)+|no tests ran)(?: in [\d.]+s(?: \([^)]*\))?)?\s*=*$"
)
_PYTEST_SHORT = re.compile(r"^(FAILED|ERROR) (\S+?)(?: - (.*))?$")


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
        nodeid, message = m[2], m[3] or ""
        file, _, rest = nodeid.partition("::")
        name = rest or file
        block = (
            sections.get(rest.replace("::", "."))
            or sections.get(rest.split("::")[-1])
            or (sections.get(file) if not rest else None)
            or ""
        )
        message = message or _pytest_e_line(block)
        hits = re.findall(rf"^{re.escape(file)}:(\d+):", block, re.M)
        failures.append(Failure(name, file or None, int(hits[-1]) if hits else None,
                                _clip(message, MESSAGE_CHARS), _clip(block, STACK_CHARS)))  # fmt: skip
    return TestReport(passed, failed, skipped, passed + failed + skipped, failures, "pytest-text")


def _pytest_e_line(block: str) -> str:
    """The first ``E   …`` line of a pytest traceback: the exception as raised."""
    m = re.search(r"^E\s+(.+)$", block, re.M)
    return m[1].strip() if m else ""


def _pytest_sections(lines: list[str]) -> dict[str, str]:
    """Title → body of the "____ test_x ____" blocks in FAILURES and ERRORS."""
    out: dict[str, str] = {}
    title, body = None, []
    for line in lines + ["=" * 10]:
        m = re.match(r"^_{3,} (?:ERROR at \w+ of |ERROR collecting )?(.+?) _{3,}$", line)
        if m or line.startswith("="):
            if title is not None:
                out.setdefault(title, "\n".join(body).strip())
            title, body = (m[1] if m else None), []
        elif title is not None:
            body.append(line)
    return out


# -- jest / vitest text -----------------------------------------------------------------

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
            counts = dict((w, int(n)) for n, w in re.findall(r"(\d+) (\w+)", m[1]))
            total = counts.get("total", 0)
            return _jest_report(counts, total, _jest_failures(lines), "jest-text")
        m = _VITEST_TESTS.match(s)
        if m:
            counts = dict((w, int(n)) for n, w in re.findall(r"(\d+) (\w+)", m[1]))
            return _jest_report(counts, int(m[2]), _vitest_failures(lines), "vitest-text")
    return None


def _jest_report(counts: dict[str, int], total: int, failures: list[Failure], parser: str) -> TestReport:
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
        block = _dedent(body).strip()
        file, ln = js_location(block)
        message = next((b.strip() for b in block.splitlines() if b.strip()), "")
        out.append(Failure(m[1].strip().replace(" › ", " > "), file, ln,
                           _clip(message, MESSAGE_CHARS), _clip(block, STACK_CHARS)))  # fmt: skip
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
        out.append(Failure(m[2].strip(), loc[1] if loc else m[1], int(loc[2]) if loc else None,
                           _clip(message, MESSAGE_CHARS), _clip(block, STACK_CHARS)))  # fmt: skip
    return out


# -- choosing a parser ----------------------------------------------------------------------


def report_from_outputs(
    kind: str,
    stdout: str,
    stderr: str,
    junit_xml: str | None,
    *,
    root: str | None = None,
) -> TestReport | None:
    """The best report for a run: junit first, then the text parsers for ``kind``.

    For Node, failures the junit left without a location take it from the text.
    ``root`` (the workspace) makes absolute failure paths relative to it.
    """
    text = f"{stdout}\n{stderr}"
    if kind == "pytest":
        text_parsers = [parse_pytest_text]
    else:  # node, npm: an npm script may run any JS runner
        text_parsers = [parse_node_text, parse_jest_text, parse_pytest_text]
    junit = parse_junit(junit_xml) if junit_xml else None
    report = None
    if junit is not None and junit.total > 0:
        report = junit
        if kind != "pytest" and any(f.line is None for f in junit.failures):
            report = _fill_locations(junit, parse_node_text(text))
    else:
        if junit is not None:  # Node's own report says no test ran; only another runner's text may differ
            text_parsers = [p for p in text_parsers if p is not parse_node_text]
        for parse in text_parsers:
            report = parse(text)
            if report is not None:
                break
        report = report or junit
    if report is not None and kind != "pytest":
        report = _with_load_errors(report, text)
    if report is not None and root:
        report = replace(report, failures=[_relative(f, root) for f in report.failures])
    return report


_LOAD_ERROR = re.compile(
    r"^(?P<path>(?:file://)?/[^\s:]+):(?P<line>\d+)\n(?P<body>.*?)^\s*Node\.js v[\d.]+\s*$", re.M | re.S
)


def _with_load_errors(report: TestReport, text: str) -> TestReport:
    """A test file that failed to load is a Node failure named by its path with the
    message "test failed"; the real error (a SyntaxError…) was printed by the child
    as ``<path>:<line>`` … ``Node.js vX``. Put that error into the failure."""
    plain = re.sub(r"^# ?", "", strip_ansi(text), flags=re.M)  # TAP prints it as comments
    errors = {_path(m["path"]): m for m in _LOAD_ERROR.finditer(plain)}
    if not errors:
        return report
    out = []
    for f in report.failures:
        m = errors.get(_path(f.name)) or (errors.get(f.file) if f.file else None)
        if m is not None and f.message in ("", "test failed"):
            body = m["body"].strip()
            message = next((l.strip() for l in body.splitlines() if re.match(r"^\w*(Error|Exception)\b", l.strip())), "")
            f = replace(f, file=_path(m["path"]), line=int(m["line"]),
                        message=_clip(message or f.message, MESSAGE_CHARS),
                        stack=_clip(f"{m['path']}:{m['line']}\n{body}", STACK_CHARS))  # fmt: skip
        out.append(f)
    return replace(report, failures=out)


def _fill_locations(report: TestReport, text: TestReport | None) -> TestReport:
    if text is None:
        return report
    by_name: dict[str, Failure] = {}
    for f in text.failures:
        by_name.setdefault(f.name, f)
        by_name.setdefault(f.name.rsplit(" > ", 1)[-1], f)
    filled = []
    for f in report.failures:
        t = by_name.get(f.name) or by_name.get(f.name.rsplit(" > ", 1)[-1])
        if f.line is None and t is not None and t.line is not None:
            f = replace(f, file=t.file, line=t.line, message=f.message or t.message)
        filled.append(f)
    return replace(report, failures=filled)


def _relative(f: Failure, root: str) -> Failure:
    """Paths under the workspace become relative (a file that failed to load is named by its path)."""
    prefix = root.rstrip("/") + "/"
    cut = lambda p: p[len(prefix) :] if p and p.startswith(prefix) else p  # noqa: E731
    return replace(f, file=cut(f.file), name=cut(_path(f.name)) if _path(f.name).startswith(prefix) else f.name)


# -- tests.json / install.json ------------------------------------------------------------


def _tail(text: str, limit: int = TAIL_CHARS) -> str:
    return text if len(text) <= limit else "…" + text[-limit:]


def build_tests_json(result: ProcessResult, report: TestReport | None, command: Sequence[str]) -> dict:
    """tests.json. ``command`` is the test command as named; ``argv`` what actually ran.

    ``ok`` needs exit code 0 AND at least one test AND no failure: a run where no
    test executed, or whose output could not be read, is never a success.
    ``error`` says why a run that did not fail a test is still not ok.
    """
    r = report or TestReport(0, 0, 0, 0, [], "")
    ok = (
        result.error is None
        and not result.timed_out
        and result.exit_code == 0
        and report is not None
        and r.total > 0
        and r.failed == 0
    )
    error = result.error
    if error is None and result.timed_out:
        error = f"timed out after {result.duration_ms} ms"
    elif error is None and report is None:
        error = "no test results could be read from the output"
    elif error is None and r.total == 0:
        error = "no tests ran"
    elif error is None and result.exit_code != 0 and r.failed == 0:
        error = f"exit code {result.exit_code} although no test failure was reported"
    return {
        "command": shlex.join(command),
        "argv": list(result.argv),
        "exitCode": result.exit_code,
        "ok": ok,
        "timedOut": result.timed_out,
        "durationMs": result.duration_ms,
        "startedAt": result.started_at,
        "finishedAt": result.finished_at,
        "stdoutTail": _tail(result.stdout),
        "stderrTail": _tail(result.stderr),
        "passed": r.passed,
        "failed": r.failed,
        "skipped": r.skipped,
        "total": r.total,
        "failures": [f.as_dict() for f in r.failures[:MAX_FAILURES]],
        "parser": r.parser or None,
        "error": error,
    }


def _step(result: ProcessResult) -> dict:
    return {
        "command": shlex.join(result.argv),
        "argv": list(result.argv),
        "exitCode": result.exit_code,
        "ok": result.error is None and not result.timed_out and result.exit_code == 0,
        "timedOut": result.timed_out,
        "durationMs": result.duration_ms,
        "startedAt": result.started_at,
        "finishedAt": result.finished_at,
        "stdoutTail": _tail(result.stdout),
        "stderrTail": _tail(result.stderr),
        "error": result.error,
    }


def build_install_json(results: Sequence[ProcessResult], commands: Sequence[Sequence[str]]) -> dict:
    """install.json for a plan's commands, run in order until the first failure.

    ``ok`` only when every planned command ran and succeeded; exit code, output
    tails and error are the last step's (the failing one, when one failed).
    """
    steps = [_step(r) for r in results]
    last = steps[-1] if steps else None
    ok = bool(steps) and len(steps) == len(commands) and all(s["ok"] for s in steps)
    error = last["error"] if last else "nothing ran"
    if error is None and last and last["timedOut"]:
        error = f"{last['command']} timed out after {last['durationMs']} ms"
    elif error is None and not ok and last and last["ok"]:
        error = f"only {len(steps)} of {len(commands)} commands ran"
    return {
        "command": " && ".join(shlex.join(c) for c in commands),
        "commands": [list(c) for c in commands],
        "exitCode": last["exitCode"] if last else None,
        "ok": ok,
        "timedOut": any(s["timedOut"] for s in steps),
        "durationMs": sum(s["durationMs"] for s in steps),
        "startedAt": steps[0]["startedAt"] if steps else None,
        "finishedAt": last["finishedAt"] if last else None,
        "stdoutTail": last["stdoutTail"] if last else "",
        "stderrTail": last["stderrTail"] if last else "",
        "steps": steps,
        "error": error,
    }
