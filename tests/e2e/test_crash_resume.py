"""Crash-safe resume: crash before and after every event, or SIGKILL at random, then resume.

The model is deterministic (its reply depends only on the request), so a resumed run
must end exactly like the run that never crashed: same state and reason, same final
workspace, a gapless and valid hash chain, no step completed twice, no orphan left.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.conftest import envelope, kodr, kodr_env, snapshot, tagged_processes
from tests.support.scripted_server import ScriptedServer
from store.database import default_url, open_store

PKG = json.dumps({"name": "slug", "version": "1.0.0", "private": True, "scripts": {"test": "node --test"}})
TEST = """const test = require('node:test');
const assert = require('node:assert/strict');
const { slug } = require('./slug.js');
test('lowercases', () => assert.equal(slug('Hello'), 'hello'));
test('joins words', () => assert.equal(slug('a b'), 'a-b'));
"""
V1 = "// BUG_V1\nexports.slug = (s) => s;\n"
V2 = "// BUG_V2\nexports.slug = (s) => s.toLowerCase();\n"
FIXED = "// FIXED\nexports.slug = (s) => s.toLowerCase().split(' ').join('-');\n"


def deterministic_model(body: dict) -> dict:
    """Proposal → V1 (2 failures); repair of V1 → V2 (1 failure); repair of V2 → fixed."""
    prompt = "\n".join(str(m.get("content")) for m in body.get("messages", []))
    if "BUG_V2" in prompt:
        return envelope({"slug.js": FIXED}, "fix joining")
    if "BUG_V1" in prompt:
        return envelope({"slug.js": V2}, "lowercase")
    return envelope({"package.json": PKG, "slug.js": V1, "slug.test.js": TEST}, "add slug")


ARGS = ["--install", "--test", "node --test", "--heal", "--max-turns", "3", "--json", "-q"]
OUTCOMES = ("ModelCallCompleted", "ModelCallFailed", "WritesApplied", "InstallFinished", "TestsFinished")


def _run(ws: Path, srv: ScriptedServer, fault: str | None = None):
    env = {"KODR_FAULT": fault} if fault else {}
    return kodr("run", "-p", "slugify", "--base-url", srv.base_url, *ARGS, cwd=ws, env=env)



def _check(ws: Path, run_id: str, reference: dict) -> list[str]:
    store = open_store(default_url(ws))
    recs = store.load(run_id)
    problems = []
    row = store.get_run(run_id)
    if (row["state"], row["reason"]) != (reference["state"], reference["reason"]):
        problems.append(f"ended {row['state']}/{row['reason']}, expected {reference['state']}/{reference['reason']}")
    if [r.seq for r in recs] != list(range(1, len(recs) + 1)):
        problems.append("seq has gaps")
    if not store.verify(run_id).ok:
        problems.append(f"hash chain broken: {store.verify(run_id)}")
    keys = Counter(r.event.key for r in recs if r.type in OUTCOMES)
    twice = [k for k, n in keys.items() if n > 1]
    if twice:
        problems.append(f"steps completed twice: {twice}")
    if tagged_processes(run_id):
        problems.append(f"orphaned processes: {tagged_processes(run_id)}")
    if snapshot(ws) != reference["workspace"]:
        problems.append("final workspace differs")
    return problems


def _resume_and_check(ws: Path, reference: dict) -> list[str] | None:
    """Resume the workspace's run and compare it with the reference; None if no run was recorded."""
    rows = open_store(default_url(ws)).runs()
    if not rows:
        return None
    resumed = kodr("resume", rows[0]["run_id"], "--json", "-q", cwd=ws)
    assert resumed.code in (0, 10, 11, 12), resumed.err
    return _check(ws, rows[0]["run_id"], reference)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    ws = tmp_path_factory.mktemp("reference")
    with ScriptedServer(responder=deterministic_model) as srv:
        r = _run(ws, srv)
    out = r.json()
    assert (out["state"], out["reason"]) == ("passed", "verification_passed"), r.err
    assert out["heal_turn"] == 2
    return {"state": out["state"], "reason": out["reason"], "events": out["last_seq"], "workspace": snapshot(ws)}


@pytest.mark.slow
@pytest.mark.parametrize("when", ["after", "before"])
def test_crash_at_every_event_then_resume(reference: dict, tmp_path: Path, when: str) -> None:
    failures = {}
    with ScriptedServer(responder=deterministic_model) as srv:
        for n in range(1, reference["events"] + 1):
            ws = tmp_path / f"{when}-{n}"
            ws.mkdir()
            crashed = _run(ws, srv, f"{when}:{n}")
            assert crashed.code == 137, f"{when}:{n} did not crash: {crashed.err}"
            problems = _resume_and_check(ws, reference)
            if problems is None:
                assert (when, n) == ("before", 1)  # the run was never recorded: nothing to resume
            elif problems:
                failures[f"{when}:{n}"] = problems
    assert failures == {}


@pytest.mark.slow
def test_sigkill_at_seeded_random_moments_then_resume(reference: dict, tmp_path: Path) -> None:
    rng = random.Random(20261125)
    failures = {}
    with ScriptedServer(responder=deterministic_model) as srv:
        for i in range(6):
            ws = tmp_path / f"kill-{i}"
            ws.mkdir()
            proc = subprocess.Popen(
                [sys.executable, "-m", "adapters.cli", "run", "-p", "slugify", "--base-url", srv.base_url, *ARGS],
                cwd=ws, env=kodr_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            )
            time.sleep(rng.uniform(0.4, 4.0))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            problems = _resume_and_check(ws, reference)
            if problems:
                failures[f"kill-{i}"] = problems
    assert failures == {}


def test_two_resumers_exactly_one_proceeds(tmp_path: Path) -> None:
    """A live owner keeps the run: the second `kodr resume` exits non-zero naming it."""
    from store.leases import owner_id

    ws = tmp_path / "ws"
    ws.mkdir()
    with ScriptedServer(responder=deterministic_model) as srv:
        crashed = _run(ws, srv, "after:3")
        assert crashed.code == 137
        store = open_store(default_url(ws))
        run_id = store.runs()[0]["run_id"]
        # Another live process holds the lease (this test process stands in for it).
        lease = store.claim(run_id, owner_id(), ttl_s=60)
        blocked = kodr("resume", run_id, cwd=ws)
        assert blocked.code == 4
        assert lease.owner in blocked.err
        store.release(lease)
        ok = kodr("resume", run_id, "--json", "-q", cwd=ws)
        assert ok.code == 0, ok.err
        assert ok.json()["state"] == "passed"
