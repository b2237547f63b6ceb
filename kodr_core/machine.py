"""The run machine: every legal move a run can make, and nothing else.

Built on ``transitions`` with ``auto_transitions`` off, so no trigger can jump
past a guard, and illegal triggers raise :class:`IllegalTransition`. A machine
is restored by constructing it at a folded state: no callbacks run on restore.
"""

from __future__ import annotations

from transitions import Machine, MachineError

from kodr_core.errors import IllegalTransition
from kodr_core.states import TERMINAL, State

_LIVE = [s.value for s in State if s not in TERMINAL]

#: (trigger, sources, destination). The single source of truth for the README diagram.
TRANSITIONS: list[tuple[str, list[str], str]] = [
    ("propose", [State.REQUESTED], State.PROPOSING),
    ("adopt", [State.REQUESTED], State.APPLIED),
    ("apply", [State.PROPOSING], State.APPLIED),
    ("conclude_dry_run", [State.PROPOSING], State.PROPOSED),
    ("install", [State.APPLIED, State.HEALING], State.INSTALLING),
    ("verify", [State.APPLIED, State.INSTALLING, State.HEALING], State.VERIFYING),
    ("heal", [State.VERIFYING], State.HEALING),
    ("succeed", [State.VERIFYING], State.PASSED),
    ("stall", [State.VERIFYING, State.HEALING], State.STALLED),
    ("fail", _LIVE, State.FAILED),
    ("time_out", _LIVE, State.TIMED_OUT),
]

TRIGGERS: frozenset[str] = frozenset(t for t, _, _ in TRANSITIONS)


def _spec() -> list[dict[str, object]]:
    return [{"trigger": t, "source": [str(s) for s in src], "dest": str(dst)} for t, src, dst in TRANSITIONS]


class RunMachine:
    """A run's position in the machine; ``fire`` is the only way to move it."""

    state: str

    def __init__(self, state: State | str = State.REQUESTED) -> None:
        self._machine = Machine(
            model=self,
            states=[s.value for s in State],
            transitions=_spec(),
            initial=State(state).value,
            auto_transitions=False,
            ignore_invalid_triggers=False,
            model_attribute="state",
        )

    @property
    def current(self) -> State:
        return State(self.state)

    def fire(self, trigger: str) -> tuple[State, State]:
        """Move by ``trigger``; returns (from, to) or raises IllegalTransition."""
        before = self.current
        if trigger not in TRIGGERS:
            raise IllegalTransition(before, trigger)
        try:
            getattr(self, trigger)()
        except MachineError as exc:
            raise IllegalTransition(before, trigger) from exc
        return before, self.current


def _table() -> dict[tuple[str, str], State]:
    """(source, trigger) -> destination, read once from one ``transitions`` Machine.

    Building a Machine costs ~0.3 ms; the fold and every append ask this question, so
    the machine is built once at import and its transitions are read into a dict.
    """
    machine = RunMachine()._machine
    return {
        (source, trigger): State(str(t.dest))
        for trigger, event in machine.events.items()
        for source, moves in event.transitions.items()
        for t in moves
    }


_DESTINATIONS = _table()


def destination(state: State | str, trigger: str) -> State:
    """Where ``trigger`` takes a run in ``state``; raises if it is illegal there."""
    to = _DESTINATIONS.get((str(state), trigger))
    if to is None:
        raise IllegalTransition(state, trigger)
    return to


def mermaid() -> str:
    """The state diagram, drawn by transitions itself from :data:`TRANSITIONS`."""
    from transitions.extensions import GraphMachine

    class _Model:
        pass

    graph = GraphMachine(
        model=_Model(),
        states=[s.value for s in State],
        transitions=_spec(),
        initial=State.REQUESTED.value,
        auto_transitions=False,
        graph_engine="mermaid",
        show_conditions=False,
    )
    return str(graph.get_graph().draw(None))


if __name__ == "__main__":
    print(mermaid())
