"""Replay without side effects, materialize, re-run from the recording, and audit the hash chain."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from adapters.replay import divergences
from kodr_core.aggregate import fold
from store.database import default_url, open_store
from tests.e2e.conftest import kodr, snapshot
from tests.e2e.test_crash_resume import ARGS, FIXED, V1, deterministic_model
from tests.support.scripted_server import ScriptedServer

HISTORIES = Path(__file__).parent.parent / "fixtures" / "histories"


def test_golden_history_replays_legal() -> None:
    r = kodr("replay", "--file", str(HISTORIES / "demo-passed.json"), cwd=HISTORIES)
    assert r.code == 0, r.err
    assert "verifying → passed via succeed [verification_passed]" in r.out
    assert "ok (25 events, ends passed)" in r.out


def test_golden_history_with_an_illegal_transition_is_rejected() -> None:
    r = kodr("replay", "--file", str(HISTORIES / "demo-illegal-skip-verify.json"), "--json", cwd=HISTORIES)
    assert r.code == 1
    out = r.json()
    assert out["ok"] is False
    assert out["illegal"][0]["seq"] == 12
    assert "succeed" in out["illegal"][0]["error"] and "installing" in out["illegal"][0]["error"]


def _healed_run(ws: Path) -> str:
    with ScriptedServer(responder=deterministic_model) as srv:
        r = kodr("run", "-p", "slugify", "--base-url", srv.base_url, *ARGS, cwd=ws)
    assert r.json()["state"] == "passed", r.err
    return r.json()["run_id"]


def test_replay_materialize_rerun_and_audit(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    run_id = _healed_run(ws)
    store = open_store(default_url(ws))
    records = store.load(run_id)

    ok = kodr("replay", run_id, cwd=ws)
    assert ok.code == 0 and "healing" in ok.out

    # Materialize as of the first writes, then at the end.
    first_writes = next(r.seq for r in records if r.type == "WritesApplied")
    early = kodr("replay", run_id, "--materialize", str(tmp_path / "early"), "--at", str(first_writes), cwd=ws)
    assert early.code == 0, early.err
    assert (tmp_path / "early" / "slug.js").read_text() == V1
    final = kodr("replay", run_id, "--materialize", str(tmp_path / "final"), cwd=ws)
    assert final.code == 0
    assert (tmp_path / "final" / "slug.js").read_text() == FIXED
    # the package-lock.json npm wrote is recorded with the install step, so it is materialized too
    assert snapshot(tmp_path / "final") == snapshot(ws) and "package-lock.json" in snapshot(ws)

    # Re-run with the recorded replies: no model server exists now.
    rerun = kodr("replay", run_id, "--rerun", str(tmp_path / "rerun"), "--json", cwd=ws)
    assert rerun.code == 0, rerun.err
    out = rerun.json()["rerun"]
    assert (out["state"], out["reason"], out["divergences"]) == ("passed", "verification_passed", [])

    # Audit: the chain verifies, then a row edited behind the trigger's back is found.
    assert kodr("audit", "verify", run_id, cwd=ws).code == 0
    db = sqlite3.connect(ws / ".kodr" / "kodr.db")
    db.execute("DROP TRIGGER IF EXISTS events_no_update")
    names = [n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='trigger'")]
    for n in names:
        db.execute(f"DROP TRIGGER {n}")
    body = db.execute("SELECT body FROM events WHERE run_id=? AND seq=3", (run_id,)).fetchone()[0]
    db.execute("UPDATE events SET body=? WHERE run_id=? AND seq=3", (body.replace("propose", "pr0pose"), run_id))
    db.commit()
    db.close()
    broken = kodr("audit", "verify", cwd=ws)
    assert broken.code == 1
    assert f"{run_id}: BROKEN at seq 3" in broken.out


def test_divergences_name_the_turn_and_the_counts(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    run_id = _healed_run(ws)
    records = open_store(default_url(ws)).load(run_id)
    full = fold(run_id, records)
    cut = next(r.seq for r in records if r.type == "StateChanged" and r.event.trigger == "heal" and r.event.heal_turn == 2)
    partial = fold(run_id, [r for r in records if r.seq <= cut])
    found = divergences(full, partial)
    assert "turn 2: tests ran in the recording, did not run now" in found
    assert any(d.startswith("end: recorded passed") for d in found)


def test_resume_all_resumes_only_unfinished_runs(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    done = _healed_run(ws)
    other = tmp_path / "other"
    other.mkdir()
    with ScriptedServer(responder=deterministic_model) as srv:
        crashed = kodr("run", "-p", "slugify", "--base-url", srv.base_url, *ARGS, cwd=other,
                       env={"KODR_FAULT": "after:6"})
        assert crashed.code == 137
        r = kodr("resume", "--all", "--json", "-q", cwd=other)
    rows = r.json()
    assert r.code == 0, r.err
    assert len(rows) == 1 and rows[0]["state"] == "passed" and rows[0]["run_id"] != done
    assert kodr("resume", "--all", "--json", "-q", cwd=other).json() == []
