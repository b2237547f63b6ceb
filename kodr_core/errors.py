"""kodr's error hierarchy: each error carries a user-facing message and an exit code."""

from __future__ import annotations


class KodrError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with when this escapes."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(KodrError):
    """The user asked for something kodr refuses (bad flag, refused command)."""

    exit_code = 2


class RefusedInput(KodrError):
    """Input kodr will not act on: a path escaping the workspace, a hostile manifest."""

    exit_code = 2


class IllegalTransition(KodrError):
    """A trigger that the run machine does not allow from the current state."""

    exit_code = 3

    def __init__(self, state: object, trigger: str) -> None:
        super().__init__(f"illegal transition: trigger {trigger!r} from state {state!s}")
        self.state = state
        self.trigger = trigger


class ConcurrencyConflict(KodrError):
    """Another writer appended at the seq we expected to write: it owns the run."""

    exit_code = 4


class RunLocked(KodrError):
    """The run is leased by a live owner."""

    exit_code = 4


class StoreUnavailable(KodrError):
    """The database is locked past its busy timeout, unreachable, or not migrated."""

    exit_code = 5


class StoreCorrupt(StoreUnavailable):
    """The store answers but its contents cannot be trusted or read: a corrupt file, an
    event this kodr cannot decode, a broken hash chain. Exit 5, like any store problem."""


class RunNotFound(KodrError):
    exit_code = 6
