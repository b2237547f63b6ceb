"""explain.one_line: a run's outcome in one line with the cause, from the terminal event alone."""

from __future__ import annotations

from kodr_core import events as ev
from kodr_core.aggregate import fold
from kodr_core.decide import Fire, next_step
from kodr_core.explain import one_line
from kodr_core.states import State
from tests.unit.fakes import T0, failure, fake_install_json, fake_tests_json, iso_utc
from tests.unit.test_decide import NODE, installing, moved, verifying


def ended(events: list[ev.Event]) -> str:
    """Fold, take decide's terminal step, record it, and render the one line."""
    records = [ev.RecordedEvent("r", i, e, iso_utc(T0)) for i, e in enumerate(events, start=1)]
    run = fold("r", records)
    step = next_step(run, T0)
    assert isinstance(step, Fire) and step.reason is not None
    done = ev.StateChanged(from_state=run.state.value, to_state="failed" if step.trigger == "fail" else step.trigger,
                           trigger=step.trigger, facts=step.facts, reason=step.reason.value,
                           outcome="failed")  # fmt: skip
    return one_line(fold("r", [*records, ev.RecordedEvent("r", len(records) + 1, done, iso_utc(T0))]))


def test_no_verification_names_its_cause() -> None:
    missing = fake_tests_json(["python", "-m", "pytest"]) | {
        "cause": "runner_missing",
        "detail": "pytest not installed in the project environment",
    }
    assert ended(verifying(missing)) == "failed (no_verification: pytest not installed in the project environment)"


def test_no_verification_of_an_old_event_without_a_cause() -> None:
    old = fake_tests_json(NODE)
    for key in ("cause", "detail", "scope", "logBlob"):
        old.pop(key)
    assert ended(verifying(old)) == "failed (no_verification: no tests ran)"


def test_install_failed_names_the_command_and_its_first_error_line() -> None:
    result = fake_install_json(
        [["uv", "sync"]], ok=False, stderr="Using CPython 3.11\nerror: No `project` table found in: pyproject.toml\n"
    )
    result["exitCode"] = 2
    line = ended(installing(result))
    assert line == "failed (install_failed: `uv sync` exit 2: error: No `project` table found in: pyproject.toml)"


def test_tests_failed_names_the_failing_tests() -> None:
    result = fake_tests_json(NODE, passed=1, failed=1, failures=[failure("adds", "calc.test.js", 4)])
    assert ended(verifying(result)) == "failed (tests_failed: 1 failing: adds)"


def test_model_unavailable_names_the_server() -> None:
    events = verifying(fake_tests_json(NODE, failed=1, failures=[failure("adds")]), heal=True) + [
        moved(State.VERIFYING, "heal", State.HEALING, heal_turn=1),
        ev.ModelCallStarted(purpose="repair", turn=1, attempt=1, key="r:model:1", request_blob="q"),
        ev.ModelCallFailed(
            purpose="repair",
            turn=1,
            attempt=1,
            key="r:model:1",
            error="unavailable",
            message="cannot reach http://localhost:1234/v1",
            duration_ms=3,
        ),
    ]
    assert ended(events) == "failed (model_unavailable: cannot reach http://localhost:1234/v1)"


def test_a_live_run_reads_as_its_state() -> None:
    records = [ev.RecordedEvent("r", i, e, iso_utc(T0)) for i, e in enumerate(verifying(), start=1)]
    assert one_line(fold("r", records)) == "verifying"


def test_hostile_details_stay_on_one_bounded_line() -> None:
    noisy = fake_tests_json(NODE) | {"cause": "runner_crashed", "detail": "boom\n" * 500}
    line = ended(verifying(noisy))
    assert "\n" not in line and len(line) < 400
