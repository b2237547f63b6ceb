"""The machine: legal moves only, restored without callbacks, and the README's diagram is its own."""

from pathlib import Path

import pytest

from kodr_core.errors import IllegalTransition
from kodr_core.machine import TRANSITIONS, RunMachine, destination, mermaid
from kodr_core.states import TERMINAL, State


def test_golden_path_moves():
    m = RunMachine()
    for trigger in ["propose", "apply", "install", "verify", "heal", "verify", "succeed"]:
        m.fire(trigger)
    assert m.current is State.PASSED


@pytest.mark.parametrize("state", list(State))
def test_every_illegal_trigger_raises(state):
    legal = {t for t, src, _ in TRANSITIONS if state in src}
    for trigger in {t for t, _, _ in TRANSITIONS} - legal:
        with pytest.raises(IllegalTransition):
            destination(state, trigger)
    if state in TERMINAL:
        assert legal == set()


def test_no_auto_transitions():
    with pytest.raises(IllegalTransition):
        RunMachine(State.REQUESTED).fire("to_passed")


def test_readme_diagram_is_generated_from_the_machine():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = readme.split("<!-- state-diagram:start -->")[1].split("<!-- state-diagram:end -->")[0]
    assert block.strip() == f"```mermaid\n{mermaid().rstrip()}\n```"
