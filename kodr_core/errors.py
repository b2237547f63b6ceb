"""kodr's error hierarchy: each error carries a user-facing message.

The core never knows about process exit codes: the CLI maps these classes to
codes at its edge (``adapters/cli/exits.py``), as a web entrypoint maps domain
errors to HTTP statuses.
"""

from __future__ import annotations


class KodrError(Exception):
    """Base class: ``message`` is what the user reads, on one line."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(KodrError):
    """The user asked for something kodr refuses (bad flag, refused command)."""


class RefusedInput(KodrError):
    """Input kodr will not act on: a path escaping the workspace, a hostile manifest."""


class IllegalTransition(KodrError):
    """A trigger that the run machine does not allow from the current state."""

    def __init__(self, state: object, trigger: str) -> None:
        super().__init__(f"illegal transition: trigger {trigger!r} from state {state!s}")
        self.state = state
        self.trigger = trigger


class ConcurrencyConflict(KodrError):
    """Another writer appended at the seq we expected to write: it owns the run."""


class RunLocked(KodrError):
    """The run is leased by a live owner."""


class WorkspaceBusy(KodrError):
    """Another live kodr process is driving a run in this workspace."""


class StoreUnavailable(KodrError):
    """The database is locked past its busy timeout, unreachable, or not migrated."""


class StoreCorrupt(StoreUnavailable):
    """The store answers but its contents cannot be trusted or read: a corrupt file, an
    event this kodr cannot decode, a broken hash chain. Exit 5, like any store problem."""


class RunNotFound(KodrError):
    """No run matches the id, prefix or ``last`` the user gave."""
