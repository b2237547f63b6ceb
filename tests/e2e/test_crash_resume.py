"""Crash-safe resume: crash before and after every event, or SIGKILL at random, then resume.

The model is deterministic (its reply depends only on the request), so a resumed run
must end exactly like the run that never crashed: same state and reason, same final
workspace, a gapless and valid hash chain, no step completed twice, no orphan left.

The full matrix (every event, before and after) runs in-process: the engine on the
real SQLite store and a real workspace directory, a crash raised at the fault point,
then a resume through a freshly opened store; tests are judged from the workspace's
files (no node), so the matrix takes seconds and belongs to the fast suite. A sample
of fault points still crashes a real ``kodr`` process (``os._exit``) and resumes it
with real node tests (slow).
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

from store.database import default_url, open_store
from tests.e2e.conftest import envelope, kodr, kodr_env, snapshot, tagged_processes
from tests.support.scripted_server import ScriptedServer

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
def test_crash_a_real_process_at_sample_events_then_resume(reference: dict, tmp_path: Path, when: str) -> None:
    failures = {}
    last = reference["events"]
    with ScriptedServer(responder=deterministic_model) as srv:
        for n in sorted({1, 3, last // 2, last - 1}):  # the whole matrix runs in-process below
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
                cwd=ws,
                env=kodr_env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
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


# -- the whole matrix, in-process ---------------------------------------------------------


class _Model:
    """deterministic_model without HTTP."""

    def complete(self, request, *, deadline_s=None):
        from kodr_core.ports import ChatReply

        return ChatReply(content=json.dumps(deterministic_model({"messages": request.messages})),
                         finish_reason="stop", duration_ms=1)  # fmt: skip


class _Toolchain:
    """Install succeeds; the tests judge slug.js by its marker, as ``node --test`` does."""

    def install(self, commands, *, cwd, timeout_s, step_key):
        from kodr_core.results import InstallResult
        from tests.unit.fakes import fake_install_json

        return InstallResult.of(fake_install_json(commands)), b"installed\n"

    def test(self, argv, kind, *, cwd, timeout_s, step_key, only_files=()):
        from kodr_core.results import TestResult
        from tests.unit.fakes import failure, fake_tests_json

        src = (Path(cwd) / "slug.js").read_text() if (Path(cwd) / "slug.js").exists() else ""
        names = [] if "FIXED" in src else ["joins words"] if "BUG_V2" in src else ["lowercases", "joins words"]
        failures = [failure(n, "slug.js", 2) for n in names]
        result = fake_tests_json(argv, passed=2 - len(names), failed=len(names), failures=failures)
        return TestResult.of(result), b"tests\n"  # typed, as the Toolchain port returns them

    def kill_orphans(self, step_key):
        return 0

    def confinement(self, step):
        return {"sandbox": "none (in-process test)", "step": step}


_OPTIONS = {"test_command": "node --test", "install": True, "heal": True, "max_turns": 3}


def _engine(ws: Path, log, store):
    from adapters.artifacts import ArtifactWriter
    from adapters.workspace import DiskWorkspace
    from kodr_core.engine import Engine

    return Engine(log, DiskWorkspace(ws), _Toolchain(), _Model(), artifacts=ArtifactWriter(ws, store.get_blob))


def _in_process_run(ws: Path, fault: tuple[str, int] | None) -> str | None:
    """Run to the end, or to an injected crash; the run id, or None if nothing was recorded."""
    from adapters.faults import FaultyLog, InjectedCrash
    from adapters.leasing import held
    from kodr_core.engine import new_run_id
    from kodr_core.options import RunOptions

    (ws / "README.md").write_text("slugify\n")
    with open_store(default_url(ws)) as store:
        log = FaultyLog(store, *fault, hard=False) if fault else store
        run_id = new_run_id()
        try:
            _engine(ws, log, store).request("slugify", RunOptions(**_OPTIONS), run_id=run_id)
        except InjectedCrash:
            if not store.load(run_id):
                return None
        with held(store, run_id) as fenced:
            try:
                _engine(ws, FaultyLog(fenced, *fault, hard=False) if fault else fenced, store).drive(run_id)
            except InjectedCrash:
                pass
    return run_id


@pytest.fixture(scope="module")
def in_process_reference(tmp_path_factory) -> dict:
    ws = tmp_path_factory.mktemp("in-process-reference")
    run_id = _in_process_run(ws, None)
    with open_store(default_url(ws)) as store:
        row = store.get_run(run_id)
    assert (row["state"], row["reason"], row["heal_turn"]) == ("passed", "verification_passed", 2)
    return {"state": row["state"], "reason": row["reason"], "events": row["last_seq"], "workspace": snapshot(ws)}


@pytest.mark.parametrize("when", ["after", "before"])
def test_crash_at_every_event_in_process_then_resume(in_process_reference: dict, tmp_path: Path, when: str) -> None:
    from adapters.leasing import held

    failures = {}
    for n in range(1, in_process_reference["events"] + 1):
        ws = tmp_path / f"{when}-{n}"
        ws.mkdir()
        run_id = _in_process_run(ws, (when, n))
        if run_id is None:
            assert (when, n) == ("before", 1)  # the run was never recorded: nothing to resume
            continue
        with open_store(default_url(ws)) as store, held(store, run_id) as fenced:
            _engine(ws, fenced, store).resume(run_id, fenced.lease.owner)
        problems = _check(ws, run_id, in_process_reference)
        if problems:
            failures[f"{when}:{n}"] = problems
    assert failures == {}
