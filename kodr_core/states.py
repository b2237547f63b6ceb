"""The states a run can be in, as stored (snake_case)."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    REQUESTED = "requested"
    PROPOSING = "proposing"
    PROPOSED = "proposed"
    APPLIED = "applied"
    INSTALLING = "installing"
    VERIFYING = "verifying"
    HEALING = "healing"
    PASSED = "passed"
    FAILED = "failed"
    STALLED = "stalled"
    TIMED_OUT = "timed_out"


TERMINAL: frozenset[State] = frozenset({State.PROPOSED, State.PASSED, State.FAILED, State.STALLED, State.TIMED_OUT})


class Reason(StrEnum):
    """Why a run ended: every terminal event carries one."""

    VERIFICATION_PASSED = "verification_passed"
    DRY_RUN = "dry_run"
    PLAN_RECORDED = "plan_recorded"
    INSTALL_FAILED = "install_failed"
    INSTALL_REFUSED = "install_refused"
    NO_VERIFICATION = "no_verification"
    TESTS_FAILED = "tests_failed"
    TESTS_REMOVED = "tests_removed"
    BUDGET_EXHAUSTED = "budget_exhausted"
    NO_PROGRESS = "no_progress"
    OFF_TARGET_EDIT = "off_target_edit"
    MODEL_TIMEOUT = "model_timeout"
    MODEL_UNAVAILABLE = "model_unavailable"
    CONTEXT_OVERFLOW = "context_overflow"
    RUN_DEADLINE = "run_deadline"
    INSTALL_TIMEOUT = "install_timeout"
    TEST_TIMEOUT = "test_timeout"
    INVALID_PROPOSAL = "invalid_proposal"
    UNSAFE_WRITE = "unsafe_write"
    TEST_COMMAND_REFUSED = "test_command_refused"
    CANCELLED = "cancelled"  # a user cancelled the run (the service's cancel use case)
    SANDBOX_UNAVAILABLE = "sandbox_unavailable"  # --sandbox required on a worker that cannot sandbox
    WORKER_ERROR = "worker_error"  # driving the run broke a worker again and again (service workers)


#: Which terminal state each reason lands in.
OUTCOME_OF: dict[Reason, State] = {
    Reason.VERIFICATION_PASSED: State.PASSED,
    Reason.DRY_RUN: State.PROPOSED,
    Reason.CONTEXT_OVERFLOW: State.FAILED,
    Reason.SANDBOX_UNAVAILABLE: State.FAILED,
    Reason.PLAN_RECORDED: State.PROPOSED,
    Reason.INSTALL_FAILED: State.FAILED,
    Reason.INSTALL_REFUSED: State.FAILED,
    Reason.NO_VERIFICATION: State.FAILED,
    Reason.TESTS_FAILED: State.FAILED,
    Reason.TESTS_REMOVED: State.FAILED,
    Reason.BUDGET_EXHAUSTED: State.FAILED,
    Reason.NO_PROGRESS: State.STALLED,
    Reason.OFF_TARGET_EDIT: State.STALLED,
    Reason.MODEL_TIMEOUT: State.TIMED_OUT,
    Reason.MODEL_UNAVAILABLE: State.FAILED,
    Reason.RUN_DEADLINE: State.TIMED_OUT,
    Reason.INSTALL_TIMEOUT: State.TIMED_OUT,
    Reason.TEST_TIMEOUT: State.TIMED_OUT,
    Reason.INVALID_PROPOSAL: State.FAILED,
    Reason.UNSAFE_WRITE: State.FAILED,
    Reason.TEST_COMMAND_REFUSED: State.FAILED,
    Reason.CANCELLED: State.FAILED,
    Reason.WORKER_ERROR: State.FAILED,
}
