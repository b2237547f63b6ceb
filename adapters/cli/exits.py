"""Exit codes, mapped at the CLI's edge: from a run's end state and from error classes.

The core raises typed errors and records end states; only this table knows what a
process exits with. The README's "Exit codes" section is generated from it
(``python -m adapters.cli.exits``) and a test fails when the copy drifts.
"""

from __future__ import annotations

from kodr_core.errors import (
    ConcurrencyConflict,
    IllegalTransition,
    KodrError,
    RefusedInput,
    RunLocked,
    RunNotFound,
    StoreUnavailable,
    UsageError,
    WorkspaceBusy,
)

#: A finished run's state -> exit code.
EXIT_FOR_STATE: dict[str, int] = {"passed": 0, "proposed": 0, "failed": 10, "stalled": 11, "timed_out": 12}

#: An error class -> exit code; the first class the error is an instance of wins.
EXIT_FOR_ERROR: tuple[tuple[type[BaseException], int], ...] = (
    (UsageError, 2),
    (RefusedInput, 2),
    (IllegalTransition, 3),
    (ConcurrencyConflict, 4),
    (RunLocked, 4),
    (WorkspaceBusy, 4),
    (StoreUnavailable, 5),
    (RunNotFound, 6),
)

#: Errors raised by a database driver that reached the edge untranslated: still a store problem (5).
STORE_DRIVER_MODULES = ("sqlalchemy", "psycopg", "sqlite3", "MySQLdb", "pymysql")
STORE = 5

UNEXPECTED = 1
CHECK_FAILED = 1
USAGE = 2
UNREACHABLE = 7
NOT_THE_PROTOCOL = 8
INTERRUPTED = 130
TERMINATED = 143

#: Every code a ``kodr`` process can exit with, and what it means: the README's table.
MEANING: tuple[tuple[int, str], ...] = (
    (0, "`passed`, or `proposed` (`--dry-run`, `kodr plan`); any other command succeeded"),
    (
        CHECK_FAILED,
        (
            "a check found a problem (`audit verify`: a broken chain; `replay`: an illegal history or a "
            "divergence), or an unexpected error (one line on stderr; `--log-level debug` for the traceback)"
        ),
    ),
    (
        USAGE,
        (
            "bad usage or refused input, before anything is recorded: an unknown flag value, a missing task, "
            "an unusable provider configuration, a test command outside the allowlist"
        ),
    ),
    (3, "an illegal transition in a stored history"),
    (4, "another live process owns the run, or is driving a run in this workspace"),
    (STORE, "the store is unavailable: locked, unreachable, not migrated, corrupt, unsupported URL"),
    (6, "no such run"),
    (UNREACHABLE, "`kodr probe`: the model server did not answer"),
    (NOT_THE_PROTOCOL, "`kodr probe`: the server answered but does not speak the OpenAI chat-completions protocol"),
    (10, "the run ended `failed`"),
    (11, "the run ended `stalled`"),
    (12, "the run ended `timed_out`"),
    (INTERRUPTED, "interrupted by Ctrl-C (SIGINT): children killed, the run resumable with `kodr resume`"),
    (TERMINATED, "stopped by SIGTERM: the same as Ctrl-C"),
)


def exit_code_for(exc: BaseException) -> int:
    """The exit code of an error that reached the CLI's edge."""
    for cls, code in EXIT_FOR_ERROR:
        if isinstance(exc, cls):
            return code
    if is_store_driver_error(exc):
        return STORE
    return UNEXPECTED


def is_store_driver_error(exc: BaseException) -> bool:
    """A driver's own error (a corrupt SQLite file, a URL for a database kodr has no driver for)."""
    module = type(exc).__module__.split(".")[0]
    missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    return module in STORE_DRIVER_MODULES or (missing or "").split(".")[0] in STORE_DRIVER_MODULES


def exit_code_for_state(state: str) -> int:
    return EXIT_FOR_STATE.get(str(state), UNEXPECTED)


def markdown_table() -> str:
    """The README's exit-code table, generated from :data:`MEANING`."""
    rows = ["| code | meaning |", "| --- | --- |"]
    rows += [f"| `{code}` | {text} |" for code, text in MEANING]
    return "\n".join(rows)


def _check_consistent() -> None:
    """Every code the maps can produce is explained in MEANING (called by the drift test)."""
    explained = {code for code, _ in MEANING}
    used = set(EXIT_FOR_STATE.values()) | {c for _, c in EXIT_FOR_ERROR} | {UNEXPECTED, INTERRUPTED, TERMINATED}
    missing = used - explained
    if missing:
        raise AssertionError(f"exit codes without a meaning: {sorted(missing)}")


__all__ = ["EXIT_FOR_ERROR", "EXIT_FOR_STATE", "KodrError", "exit_code_for", "exit_code_for_state", "markdown_table"]

if __name__ == "__main__":
    print(markdown_table())
