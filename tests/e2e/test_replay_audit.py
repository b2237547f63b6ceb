"""Replay without side effects, materialize, re-run from the recording, and audit the hash chain."""

from __future__ import annotations

import hashlib
import json
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
    cut = next(
        r.seq for r in records if r.type == "StateChanged" and r.event.trigger == "heal" and r.event.heal_turn == 2
    )
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
        crashed = kodr(
            "run", "-p", "slugify", "--base-url", srv.base_url, *ARGS, cwd=other, env={"KODR_FAULT": "after:6"}
        )
        assert crashed.code == 137
        r = kodr("resume", "--all", "--json", "-q", cwd=other)
    rows = r.json()
    assert r.code == 0, r.err
    assert len(rows) == 1 and rows[0]["state"] == "passed" and rows[0]["run_id"] != done
    assert kodr("resume", "--all", "--json", "-q", cwd=other).json() == []


# -- audit verify: what each kind of tampering gets (fast: a history written through the store) ----


def _recorded_run(ws: Path, run_id: str = "audit-1", env: dict[str, str] | None = None) -> str:
    """A legal, unfinished run with two blobs, written through the real store of ``ws``."""
    import os

    from kodr_core import events as ev

    old = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        with open_store(default_url(ws)) as s:
            a, b = s.put_blobs([b"console.log(1)\n", b"{}\n"])
            s.append(
                run_id, 0, [ev.RunRequested(task="t", workspace=str(ws), base_snapshot={"a.js": a, "package.json": b})]
            )
            s.append(run_id, 1, [ev.StateChanged(from_state="requested", to_state="applied", trigger="adopt")])
            s.append(
                run_id,
                2,
                [
                    ev.StateChanged(from_state="applied", to_state="verifying", trigger="verify"),
                    ev.PlanRecorded(plan="p"),
                ],
            )
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return run_id


def _tamper(ws: Path, *sql: tuple[str, tuple]) -> None:
    """Run SQL on the workspace's SQLite file with the append-only triggers dropped."""
    db = sqlite3.connect(ws / ".kodr" / "kodr.db")
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall():
        db.execute(f"DROP TRIGGER {name}")
    for stmt, params in sql:
        db.execute(stmt, params)
    db.commit()
    db.close()


def test_audit_ok_then_an_edited_event_is_broken(tmp_path: Path) -> None:
    run_id = _recorded_run(tmp_path)
    ok = kodr("audit", "verify", cwd=tmp_path)
    assert ok.code == 0 and f"{run_id}: ok (4 events)" in ok.out, ok.out + ok.err
    _tamper(tmp_path, ("UPDATE events SET body = replace(body, '\"p\"', '\"q\"') WHERE seq = 4", ()))
    r = kodr("audit", "verify", run_id, cwd=tmp_path)
    assert r.code == 1 and f"{run_id}: BROKEN at seq 4: seq 4: hash does not match" in r.out


def test_audit_catches_an_edited_blob(tmp_path: Path) -> None:
    _recorded_run(tmp_path)
    key = hashlib.sha256(b"console.log(1)\n").hexdigest()
    _tamper(tmp_path, ("UPDATE blobs SET data = ? WHERE sha256 = ?", (b"steal()\n", key)))
    r = kodr("audit", "verify", cwd=tmp_path)
    assert r.code == 1
    assert f"BROKEN blob {key}: content does not match its sha256" in r.out


def test_audit_catches_a_cut_tail_with_runs_last_seq_lowered(tmp_path: Path) -> None:
    run_id = _recorded_run(tmp_path)
    _tamper(tmp_path,
            ("DELETE FROM events WHERE run_id = ? AND seq = 4", (run_id,)),
            ("UPDATE runs SET last_seq = 3, last_hash = (SELECT hash FROM events WHERE seq = 3)", ()))  # fmt: skip
    r = kodr("audit", "verify", cwd=tmp_path)
    assert r.code == 1
    assert "events end at seq 3 but the run's head anchor" in r.out and "recorded seq 4" in r.out
    # and resume refuses to append after the cut (the evidence stays)
    res = kodr("resume", run_id, "--base-url", "http://127.0.0.1:9/v1", cwd=tmp_path)
    assert res.code == 5 and "history does not verify at seq 4" in res.err, res.err
    assert "Traceback" not in res.err
    assert [r.seq for r in open_store(default_url(tmp_path)).load(run_id)] == [1, 2, 3]


def test_audit_of_an_emptied_database_names_the_runs_it_lost(tmp_path: Path) -> None:
    run_id = _recorded_run(tmp_path)
    _tamper(tmp_path, ("DELETE FROM events", ()), ("DELETE FROM runs", ()))
    r = kodr("audit", "verify", cwd=tmp_path)
    assert r.code == 1 and f"{run_id}: BROKEN at seq 1: events end at seq 0" in r.out


def test_audit_of_a_deleted_database_fails(tmp_path: Path) -> None:
    run_id = _recorded_run(tmp_path)
    for name in ("kodr.db", "kodr.db-wal", "kodr.db-shm"):
        (tmp_path / ".kodr" / name).unlink(missing_ok=True)
    r = kodr("audit", "verify", cwd=tmp_path)
    assert r.code == 1 and f"{run_id}: BROKEN" in r.out


def test_audit_with_nothing_to_verify_is_a_store_error(tmp_path: Path) -> None:
    r = kodr("audit", "verify", cwd=tmp_path)
    assert r.code == 5
    assert r.err.strip().endswith("nothing to verify (a new, emptied or missing database)")
    assert not (tmp_path / ".kodr").exists()  # a read-only command creates nothing
    assert "Traceback" not in r.err


def test_audit_of_an_unknown_run_fails(tmp_path: Path) -> None:
    _recorded_run(tmp_path)
    r = kodr("audit", "verify", "nosuchrun", cwd=tmp_path)
    assert r.code == 6 and "no run matches 'nosuchrun'" in r.err


def test_keyed_chain_catches_a_history_recomputed_without_the_key(tmp_path: Path) -> None:
    from store.hashchain import GENESIS, chain_hash

    key = {"KODR_AUDIT_KEY": "s3cret-audit-key"}
    run_id = _recorded_run(tmp_path, env=key)
    assert kodr("audit", "verify", cwd=tmp_path, env=key).code == 0
    unkeyed = kodr("audit", "verify", cwd=tmp_path)
    assert unkeyed.code == 1 and "written with KODR_AUDIT_KEY set" in unkeyed.out

    # The attacker edits seq 4 and recomputes every hash (and the anchor) with plain sha256.
    db = sqlite3.connect(tmp_path / ".kodr" / "kodr.db")
    rows = db.execute("SELECT seq, body FROM events WHERE run_id = ? ORDER BY seq", (run_id,)).fetchall()
    db.close()
    prev, updates = GENESIS, []
    for seq, body in rows:
        body = body.replace('"plan":"p"', '"plan":"forged"')
        digest = chain_hash(prev, body.encode())
        updates.append(("UPDATE events SET body = ?, prev_hash = ?, hash = ? WHERE seq = ?", (body, prev, digest, seq)))
        prev = digest
    _tamper(tmp_path, *updates, ("UPDATE runs SET last_hash = ?", (prev,)))
    head = tmp_path / ".kodr" / "runs" / run_id / "head.json"
    head.write_text(json.dumps({"run_id": run_id, "seq": 4, "hash": prev}))
    # Without the key the forgery is indistinguishable from a real history: that is what the key is for.
    assert kodr("audit", "verify", cwd=tmp_path).code == 0
    keyed = kodr("audit", "verify", cwd=tmp_path, env=key)
    assert keyed.code != 0
    assert "HMAC" in keyed.out + keyed.err
