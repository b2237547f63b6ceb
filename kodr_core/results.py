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

import shlex
from enum import StrEnum
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, field_validator
from pydantic.alias_generators import to_camel


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


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True, alias_generator=to_camel, populate_by_name=True, extra="ignore"
    )

    def dump(self) -> dict[str, Any]:
        """The documented camelCase JSON shape (what events store and artifacts show)."""
        return self.model_dump(mode="json", by_alias=True)


class Failure(_Model):
    """One failing test: its full name, where it failed, and what the runner said."""

    name: str
    file: str | None = None
    line: int | None = None
    message: str = ""
    stack: str = ""


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
    def of(cls, payload: "TestResult | Mapping[str, Any]") -> "TestResult":
        """A stored payload (camelCase dict, any version) as a model."""
        return payload if isinstance(payload, TestResult) else cls.model_validate(dict(payload))

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

    @classmethod
    def of(cls, payload: "InstallResult | Mapping[str, Any]") -> "InstallResult":
        """A stored payload (camelCase dict, any version) as a model."""
        return payload if isinstance(payload, InstallResult) else cls.model_validate(dict(payload))

    def first_error_line(self) -> str:
        """The first non-blank stderr line of the failing step: the one line a user needs."""
        for text in (self.stderr_tail, self.stdout_tail, self.error or ""):
            for line in text.splitlines():
                if line.strip() and not line.strip().startswith("…"):
                    return line.strip()[:200]
        return ""
