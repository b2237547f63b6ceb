"""Stored payloads of older event versions decode through the upcasters; newer or broken ones are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kodr_core import events as ev

HISTORIES = Path(__file__).parent.parent / "fixtures" / "histories"


def test_every_older_version_has_an_upcaster():
    for type_, cls in ev.EVENT_TYPES.items():
        for version in range(1, cls.VERSION):
            assert (type_, version) in ev.UPCASTERS, f"{type_} v{version} has no upcaster to v{version + 1}"
    assert all(v < ev.EVENT_TYPES[t].VERSION for t, v in ev.UPCASTERS), "an upcaster for a current version"


def test_proposal_accepted_v1_decodes_without_its_null_plan():
    v1 = {"purpose": "repair", "turn": 2, "summary": "s", "files": [{"path": "a.js"}], "plan": None}
    e = ev.decode("ProposalAccepted", 1, v1)
    assert isinstance(e, ev.ProposalAccepted) and (e.turn, e.summary, e.files) == (2, "s", [{"path": "a.js"}])
    assert "plan" not in e.payload() and e.VERSION == 2
    assert ev.decode("ProposalAccepted", 2, e.payload()) == e


def test_proposal_accepted_v2_refuses_a_plan():
    with pytest.raises(ev.UnknownEvent, match="carries a plan"):
        ev.decode("ProposalAccepted", 1, {"purpose": "plan", "turn": 0, "plan": "the plan"})
    with pytest.raises(ValueError, match="plan"):  # v2 has no such field (extra="forbid")
        ev.decode("ProposalAccepted", 2, {"purpose": "plan", "turn": 0, "plan": None})


def test_the_golden_histories_hold_v1_proposals_and_decode():
    """The fixtures were written by an earlier kodr: their proposals are v1 with "plan": null."""
    seen = 0
    for path in sorted(HISTORIES.glob("*.json")):
        for r in json.loads(path.read_text()):
            if r["type"] == "ProposalAccepted":
                assert r["schema_version"] == 1 and r["data"]["plan"] is None
                assert isinstance(ev.decode(r["type"], r["schema_version"], r["data"]), ev.ProposalAccepted)
                seen += 1
    assert seen >= 2
