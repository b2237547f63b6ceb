"""Ownership on resume: two resumers race, and an interrupted step's orphans are reaped."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from store.database import default_url, open_store
from tests.e2e.conftest import envelope, kodr, kodr_env, tagged_processes
from tests.support.scripted_server import ScriptedServer

PKG = json.dumps({"name": "slow", "version": "1.0.0", "private": True, "scripts": {"test": "node --test"}})
# The test takes a minute unless the workspace holds a file `delay_ms` with its duration: the test's
# environment is an allowlist (adapters/sandbox.py), so no variable of ours reaches it; a file does.
# The file is only ever added after the run's base snapshot, before a resume.
SLOW_TEST = """const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
test('takes its time', async () => {
  const ms = fs.existsSync('delay_ms') ? Number(fs.readFileSync('delay_ms', 'utf8')) : 60000;
  await new Promise((r) => setTimeout(r, ms));
  assert.ok(true);
});
"""
ARGS = ["--test", "node --test", "--json", "-q"]


def _model(body: dict) -> dict:
    return envelope({"package.json": PKG, "slow.test.js": SLOW_TEST})


def _popen(args: list[str], ws: Path, extra: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "adapters.cli", *args],
        cwd=ws,
        env=kodr_env(extra),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    if request.param == "sqlite":
        return {}
    url = request.getfixturevalue("postgres_schema_url")
    up = kodr("db", "upgrade", cwd=tmp_path, env={"KODR_DATABASE_URL": url})
    assert up.code == 0, up.err
    return {"KODR_DATABASE_URL": url}


def _store(ws: Path, db_env: dict[str, str]):
    return open_store(db_env.get("KODR_DATABASE_URL") or default_url(ws))


def test_two_resumers_race_exactly_one_proceeds(tmp_path: Path, db_env: dict[str, str]) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    with ScriptedServer(responder=_model) as srv:
        crashed = kodr(
            "run", "-p", "slow", "--base-url", srv.base_url, *ARGS, cwd=ws, env={**db_env, "KODR_FAULT": "after:2"}
        )
        assert crashed.code == 137, crashed.err
        run_id = _store(ws, db_env).runs()[0]["run_id"]
        (ws / "delay_ms").write_text("3000")  # long enough for the two resumers to overlap
        a = _popen(["resume", run_id, "--json", "-q"], ws, db_env)
        b = _popen(["resume", run_id, "--json", "-q"], ws, db_env)
        results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in (a, b)]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 4], results
    winner = next(out for code, out, _ in results if code == 0)
    loser = next(err for code, _, err in results if code == 4)
    assert json.loads(winner)["state"] == "passed"
    # the loser names the owner: the run's lease (host:pid:id) or the workspace's live run (pid, host)
    assert ("is leased by" in loser and ":" in loser.split("leased by ")[1]) or (
        "another kodr is driving a run in" in loser and "pid " in loser
    ), loser
    records = _store(ws, db_env).load(run_id)
    assert [r.type for r in records].count("RunResumed") == 1
    assert [r.type for r in records].count("TestsFinished") == 1


def _run_until_tests_start(ws: Path, srv: ScriptedServer, *extra: str):
    """Start `kodr run` on a minute-long test and return once its test process is running."""
    proc = _popen(["run", "-p", "slow", "--base-url", srv.base_url, *ARGS, *extra], ws, {})  # no delay_ms: a minute
    store = open_store(default_url(ws))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = store.runs()
        if rows and any(r.type == "TestsStarted" for r in store.load(rows[0]["run_id"])):
            time.sleep(0.5)  # let the runner spawn
            return proc, store, rows[0]["run_id"]
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("the run never started its tests")


def test_resume_kills_the_orphans_of_an_interrupted_step(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    with ScriptedServer(responder=_model) as srv:
        # without the OS sandbox: in it, the namespace dies with kodr and leaves no orphan to reap
        proc, store, run_id = _run_until_tests_start(ws, srv, "--sandbox", "off")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        orphans = tagged_processes(run_id)
        assert orphans, "the killed run left no test process to reap"
        (ws / "delay_ms").write_text("10")
        resumed = kodr("resume", run_id, "--json", "-q", cwd=ws)
    assert resumed.code == 0, resumed.err
    assert resumed.json()["state"] == "passed"
    assert tagged_processes(run_id) == []
    for pid in orphans:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    records = store.load(run_id)
    started = [r.event for r in records if r.type == "TestsStarted"]
    assert [s.attempt for s in started] == [1, 2]
    assert [r.type for r in records].count("TestsFinished") == 1
    resumed_ev = next(r.event for r in records if r.type == "RunResumed")
    assert resumed_ev.interrupted == started[0].key


def test_ctrl_c_leaves_a_resumable_run(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    with ScriptedServer(responder=_model) as srv:
        proc, store, run_id = _run_until_tests_start(ws, srv)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        err = proc.stderr.read()
        assert code == 130, err
        assert "kodr resume" in err and "Traceback" not in err
        assert tagged_processes(run_id) == []  # the interrupted test run was killed with its group
        (ws / "delay_ms").write_text("10")
        resumed = kodr("resume", "--all", "--json", "-q", cwd=ws)
    assert resumed.code == 0, resumed.err
    assert [r["state"] for r in resumed.json()] == ["passed"]
