"""Typed test and install results: what a verification or an install step saw.

These are the values that cross modules (the toolchain builds them, events carry
them, the fold, decide, the brakes, explain and the artifacts read them). Their
JSON shape is the documented ``tests.json`` / ``install.json`` (camelCase keys),
produced by :meth:`TestResult.dump` through field aliases, so a stored event's
payload and an artifact file are the same bytes whatever Python reads them.

Stored payloads are plain camelCase dicts written by older versions:
:meth:`TestResult.of` validates them (unknown keys ignored, missing keys
defaulted), so every old event still folds. A list given as ``command`` (older
fixtures) is joined as a shell would quote it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from kodr_core.errors import StoreUnavailable
from kodr_core.ports import ProcessResult

if TYPE_CHECKING:
    from kodr_core.runners.report import TestReport

TAIL_CHARS = 16_000
MAX_FAILURES = 100


class Scope(StrEnum):
    """Which tests a verification ran: the whole suite, or the last failing files."""

    FULL = "full"
    FAILING = "failing"


class NoVerificationCause(StrEnum):
    """Why a verification told nothing (the cause behind ``no_verification``)."""

    NO_TESTS = "no_tests_collected"
    RUNNER_CRASHED = "runner_crashed"
    RUNNER_MISSING = "runner_missing"
    USAGE_ERROR = "usage_error"
    OUTPUT_UNREADABLE = "output_unreadable"
    NO_COMMAND = "no_test_command"


class Parser(StrEnum):
    """Which reader produced the counts of a result."""

    JUNIT = "junit"
    NODE_TEXT = "node-text"
    TAP = "tap"
    MOCHA_TEXT = "mocha-text"
    AVA_TEXT = "ava-text"
    PYTEST_TEXT = "pytest-text"
    JEST_TEXT = "jest-text"
    VITEST_TEXT = "vitest-text"
    UNITTEST_TEXT = "unittest-text"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def dump(self) -> dict[str, Any]:
        """The documented camelCase JSON shape (what events store and artifacts show)."""
        return self.model_dump(mode="json", by_alias=True)

    @classmethod
    def _stored(cls, payload: Mapping[str, Any]) -> Any:
        """Validate a stored payload; one that does not read is a store problem, said in one line."""
        try:
            return cls.model_validate(dict(payload))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "?"
            raise StoreUnavailable(f"a stored {cls.__name__} does not read: {where}: {first.get('msg')}") from None


class Failure(_Model):
    """One failing test: its full name, where it failed, and what the runner said."""

    name: str
    file: str | None = None
    line: int | None = None
    message: str = ""
    stack: str = ""


class StepDeadline(_Model):
    """A step given less than its own timeout because the run's ``--deadline`` was near."""

    cut_by_run_deadline: bool
    own_timeout_s: float
    given_s: float
    run_time_left_s: float | None = None


class Confinement(_Model):
    """What a step's processes ran in: the OS sandbox or kodr's fallback, and whether they had network."""

    sandbox: str  # bwrap | none | unavailable
    mode: str  # the --sandbox setting: auto | required | off
    network: bool = False
    why: str = ""


class TestResult(_Model):
    """``tests.json``: one test run, its counts and failures, and why it is not ok."""

    __test__ = False  # not a pytest test class

    command: str = ""
    argv: list[str] = []
    exit_code: int | None = None
    ok: bool = False
    timed_out: bool = False
    duration_ms: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    stdout_tail: str = ""
    stderr_tail: str = ""
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    total: int = 0
    failures: list[Failure] = []
    parser: Parser | None = None
    error: str | None = None
    cause: NoVerificationCause | None = None
    detail: str | None = None  # one human line for ``cause``
    scope: Scope = Scope.FULL
    log_blob: str | None = None
    confinement: Confinement | None = None
    deadline: StepDeadline | None = None

    @field_validator("command", mode="before")
    @classmethod
    def _join(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return shlex.join(str(v) for v in value)
        return "" if value is None else value

    @field_validator("parser", mode="before")
    @classmethod
    def _known_parser(cls, value: Any) -> Any:
        return value if value in {p.value for p in Parser} or isinstance(value, Parser) else None

    @classmethod
    def of(cls, payload: TestResult | Mapping[str, Any]) -> TestResult:
        """A stored payload (camelCase dict, any version) as a model."""
        return payload if isinstance(payload, TestResult) else cls._stored(payload)

    @property
    def telling(self) -> bool:
        """The run says something about the code: not timed out, and some test executed."""
        return not self.timed_out and self.total > 0

    def failure_count(self) -> int | None:
        """Failed tests, or None when the result tells nothing (timed out, no test)."""
        return self.failed if self.telling else None


class InstallStep(_Model):
    """One command of an install plan, as it ran."""

    command: str = ""
    argv: list[str] = []
    exit_code: int | None = None
    ok: bool = False
    timed_out: bool = False
    duration_ms: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    stdout_tail: str = ""
    stderr_tail: str = ""
    error: str | None = None


class InstalledFile(_Model):
    """A workspace file an install created or changed (a lockfile): recorded so replay and resume see it."""

    path: str
    change: str  # created | modified
    bytes: int
    sha256: str | None = None  # None: over the snapshot cap, listed without its content
    why: str | None = None


class InstallResult(_Model):
    """``install.json``: a plan's commands, run in order until the first failure."""

    command: str = ""
    commands: list[list[str]] = []
    exit_code: int | None = None
    ok: bool = False
    timed_out: bool = False
    duration_ms: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    stdout_tail: str = ""
    stderr_tail: str = ""
    steps: list[InstallStep] = []
    error: str | None = None
    refused: list[str] | None = None
    log_blob: str | None = None
    confinement: Confinement | None = None
    deadline: StepDeadline | None = None
    written: list[InstalledFile] = []

    @classmethod
    def of(cls, payload: InstallResult | Mapping[str, Any]) -> InstallResult:
        """A stored payload (camelCase dict, any version) as a model."""
        return payload if isinstance(payload, InstallResult) else cls._stored(payload)

    def first_error_line(self) -> str:
        """The first non-blank stderr line of the failing step: the one line a user needs."""
        for text in (self.stderr_tail, self.stdout_tail, self.error or ""):
            lines = [l.strip() for l in text.splitlines() if l.strip() and not l.strip().startswith("…")]
            pick = next(
                (l for l in lines if re.match(r"^(?:\w+ )?(?:error|fatal)\b", l, re.IGNORECASE)),
                lines[0] if lines else "",
            )
            if pick:
                return pick[:200]
        return ""


# -- building results from a process ------------------------------------------------------


def _tail(text: str, limit: int = TAIL_CHARS) -> str:
    return text if len(text) <= limit else "…" + text[-limit:]


_MISSING = re.compile(
    r"No module named (?P<mod>[\w.]+)|(?P<cmd>[\w.-]+): (?:command )?not found|Cannot find module '(?P<js>[^']+)'"
    r"|npx canceled due to missing packages and no YES option: \[\"(?P<npx>@?[^\"@]+)"
    r"|could not determine executable to run|ERR_MODULE_NOT_FOUND"
)
_PYTHON_RUNNERS = ("pytest", "unittest")


def _first_line(*texts: str) -> str:
    for text in texts:
        for line in text.splitlines():
            s = line.strip()
            if s and not s.startswith(("…", "npm error code", "> ")):
                return s[:200]
    return ""


def _runner(command: Sequence[str]) -> str:
    """The runner a command names: pytest, unittest, or the JS tool / script."""
    for word in command:
        base = word.rsplit("/", 1)[-1]
        if base in ("pytest", "py.test") or word == "pytest":
            return "pytest"
        if base == "unittest":
            return "unittest"
    return " ".join(command[:3]) or "the test command"


def no_verification_cause(
    result: ProcessResult, report: TestReport | None, command: Sequence[str]
) -> tuple[NoVerificationCause, str] | None:
    """Why a run in which no test executed tells nothing, in one human line (None when tests ran)."""
    if result.timed_out or (report is not None and report.total > 0):
        return None
    runner = _runner(command)
    if result.error is not None:
        if result.error.startswith("no test command"):
            return NoVerificationCause.NO_COMMAND, result.error
        return NoVerificationCause.RUNNER_MISSING, result.error
    text = f"{result.stderr}\n{result.stdout}"
    missing = _MISSING.search(text)
    if (
        missing
        and (runner in _PYTHON_RUNNERS or result.exit_code not in (0, None))
        and not (missing["mod"] and missing["mod"] != runner and runner in _PYTHON_RUNNERS)
    ):
        what = missing["mod"] or missing["cmd"] or missing["js"] or missing["npx"] or runner
        if what == runner and runner in _PYTHON_RUNNERS:
            return NoVerificationCause.RUNNER_MISSING, f"{runner} not installed in the project environment"
        line = next((l.strip() for l in text.splitlines() if missing.group(0) in l), missing.group(0))
        return NoVerificationCause.RUNNER_MISSING, f"{what} not installed in the project ({line[:200]})"
    if runner == "pytest" and result.exit_code == 4:
        said = next((l.strip() for l in text.splitlines() if ": error: " in l), "") or _first_line(
            result.stderr, result.stdout
        )
        return NoVerificationCause.USAGE_ERROR, f"pytest usage error (exit 4): {said[:200]}"
    if runner == "pytest" and result.exit_code == 5:
        return NoVerificationCause.NO_TESTS, "pytest collected no tests (exit 5)"
    if report is not None:
        if result.exit_code not in (0, None):
            return NoVerificationCause.RUNNER_CRASHED, (
                f"{runner} exit {result.exit_code} before any test ran: {_first_line(result.stderr, result.stdout)}"
            )
        return NoVerificationCause.NO_TESTS, f"{runner} ran no tests"
    if result.exit_code not in (0, None):
        return NoVerificationCause.RUNNER_CRASHED, (
            f"{runner} exit {result.exit_code} without a test report: {_first_line(result.stderr, result.stdout)}"
        )
    return NoVerificationCause.OUTPUT_UNREADABLE, f"no test results could be read from the output of {runner}"


def build_tests_json(result: ProcessResult, report: TestReport | None, command: Sequence[str]) -> TestResult:
    """tests.json. ``command`` is the test command as named; ``argv`` what actually ran.

    ``ok`` needs exit code 0 AND at least one test AND no failure: a run where no
    test executed, or whose output could not be read, is never a success.
    ``error`` says why a run that did not fail a test is still not ok; ``cause``
    and ``detail`` say why a run in which no test executed told nothing.
    """
    passed = failed = skipped = total = 0
    failures: list[Failure] = []
    if report is not None:
        passed, failed, skipped, total = report.passed, report.failed, report.skipped, report.total
        failures = list(report.failures[:MAX_FAILURES])
    ok = (result.error is None and not result.timed_out and result.exit_code == 0
          and report is not None and total > 0 and failed == 0)  # fmt: skip
    error = result.error
    if error is None and result.timed_out:
        error = f"timed out after {result.duration_ms} ms"
    elif error is None and report is None:
        error = "no test results could be read from the output"
    elif error is None and total == 0:
        error = "no tests ran"
    elif error is None and result.exit_code != 0 and failed == 0:
        error = f"exit code {result.exit_code} although no test failure was reported"
    cause = no_verification_cause(result, report, command)
    return TestResult(
        command=shlex.join(command), argv=list(result.argv), exit_code=result.exit_code, ok=ok,
        timed_out=result.timed_out, duration_ms=result.duration_ms, started_at=result.started_at,
        finished_at=result.finished_at, stdout_tail=_tail(result.stdout), stderr_tail=_tail(result.stderr),
        passed=passed, failed=failed, skipped=skipped, total=total, failures=failures,
        parser=report.parser if report is not None else None, error=error,
        cause=cause[0] if cause else None, detail=cause[1] if cause else None,
    )  # fmt: skip


def _step(result: ProcessResult) -> InstallStep:
    return InstallStep(
        command=shlex.join(result.argv), argv=list(result.argv), exit_code=result.exit_code,
        ok=result.error is None and not result.timed_out and result.exit_code == 0,
        timed_out=result.timed_out, duration_ms=result.duration_ms, started_at=result.started_at,
        finished_at=result.finished_at, stdout_tail=_tail(result.stdout), stderr_tail=_tail(result.stderr),
        error=result.error,
    )  # fmt: skip


def build_install_json(results: Sequence[ProcessResult], commands: Sequence[Sequence[str]]) -> InstallResult:
    """install.json for a plan's commands, run in order until the first failure.

    ``ok`` only when every planned command ran and succeeded; exit code, output
    tails and error are the last step's (the failing one, when one failed).
    """
    steps = [_step(r) for r in results]
    last = steps[-1] if steps else None
    ok = bool(steps) and len(steps) == len(commands) and all(s.ok for s in steps)
    error = last.error if last else "nothing ran"
    if error is None and last and last.timed_out:
        error = f"{last.command} timed out after {last.duration_ms} ms"
    elif error is None and not ok and last and last.ok:
        error = f"only {len(steps)} of {len(commands)} commands ran"
    return InstallResult(
        command=" && ".join(shlex.join(c) for c in commands), commands=[list(c) for c in commands],
        exit_code=last.exit_code if last else None, ok=ok, timed_out=any(s.timed_out for s in steps),
        duration_ms=sum(s.duration_ms for s in steps), started_at=steps[0].started_at if steps else None,
        finished_at=last.finished_at if last else None, stdout_tail=last.stdout_tail if last else "",
        stderr_tail=last.stderr_tail if last else "", steps=steps, error=error,
    )  # fmt: skip
