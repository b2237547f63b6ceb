"""Issue 10 items 5 and 6 at the CLI: one live run per workspace, runs bound to their workspace,
and SIGTERM handled as Ctrl-C (children killed, temp files removed, exit 143, resumable)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from adapters.cli import exits
from adapters.leasing import workspace_lock
from store.database import default_url, open_store
from tests.e2e.cli_support import KODR, kodr_script
from tests.e2e.conftest import envelope, kodr_env, tagged_processes
from tests.support.scripted_server import ScriptedServer

PKG = json.dumps({"name": "slow", "version": "1.0.0", "private": True, "scripts": {"test": "node --test"}})
# Slow unless the workspace holds a file named `fast` (the test's environment is an allowlist: no
# variable of ours reaches it, a file does).
SLOW_TEST = """const test = require('node:test');
const fs = require('node:fs');
test('takes its time', async () => {
  await new Promise((r) => setTimeout(r, fs.existsSync('fast') ? 10 : 60000));
});
"""


def _model(_body: dict) -> dict:
    return envelope({"package.json": PKG, "slow.test.js": SLOW_TEST})


def test_a_second_run_in_a_busy_workspace_is_refused_naming_the_owner(workspace: Path) -> None:
    (workspace / "fast").write_text("")
    with ScriptedServer(responder=_model) as srv, workspace_lock(workspace):
        r = kodr_script("run", "-p", "x", "--base-url", srv.base_url, cwd=workspace)
        assert srv.requests == []
    assert r.code == 4, r
    assert f"another kodr is driving a run in {workspace}: pid {os.getpid()} on " in r.err
    assert open_store(default_url(workspace)).runs() == [], "nothing recorded for the refused run"
    with ScriptedServer(responder=_model) as srv:  # released: the next run goes ahead
        ok = kodr_script("run", "-p", "x", "--base-url", srv.base_url, "--test", "node --test", cwd=workspace)
    assert ok.code == 0, ok


def test_a_run_resumes_only_in_its_workspace_unless_rebound(tmp_path: Path) -> None:
    x, y = tmp_path / "x", tmp_path / "y"
    x.mkdir()
    y.mkdir()
    (x / "fast").write_text("")
    (y / "fast").write_text("")
    shared = {"KODR_DATABASE_URL": f"sqlite:///{tmp_path}/shared.db"}
    with ScriptedServer(responder=_model) as srv:
        crashed = kodr_script(
            "run",
            "-p",
            "slow",
            "--base-url",
            srv.base_url,
            "--test",
            "node --test",
            cwd=x,
            env={**shared, "KODR_FAULT": "after:2"},
        )
        assert crashed.code == 137, crashed
        store = open_store(shared["KODR_DATABASE_URL"])
        run_id = store.runs()[0]["run_id"]
        other = kodr_script("resume", "--all", "-w", str(y), cwd=y, env=shared)
        assert other.code == 0 and "no unfinished runs" in other.out, other
        refused = kodr_script("resume", run_id, cwd=y, env=shared)
        assert refused.code == exits.USAGE and f"belongs to workspace {x}" in refused.err, refused
        assert not (y / "slow.test.js").exists()
        moved = kodr_script("resume", run_id, "-w", str(y), cwd=y, env=shared)
    assert moved.code == 0, moved
    assert (y / "slow.test.js").is_file(), "the run went on in y"
    resumed = [r.event for r in store.load(run_id) if r.type == "RunResumed"]
    assert [e.overrides.get("workspace") for e in resumed] == [str(y)]


def test_sigterm_stops_like_ctrl_c(tmp_path: Path) -> None:
    ws, tmp = tmp_path / "ws", tmp_path / "tmp"
    ws.mkdir()
    tmp.mkdir()
    env = {"TMPDIR": str(tmp)}
    with ScriptedServer(responder=_model) as srv:
        proc = subprocess.Popen(
            [KODR, "run", "-p", "slow", "--base-url", srv.base_url, "--test", "node --test"],
            cwd=ws,
            env=kodr_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        store = open_store(default_url(ws))
        deadline = time.monotonic() + 60
        run_id = None
        while time.monotonic() < deadline:
            rows = store.runs() if (ws / ".kodr" / "kodr.db").exists() else []
            if rows and any(r.type == "TestsStarted" for r in store.load(rows[0]["run_id"])):
                run_id = rows[0]["run_id"]
                break
            time.sleep(0.1)
        assert run_id, "the run never started its tests"
        deadline = time.monotonic() + 20
        while not tagged_processes(run_id) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert tagged_processes(run_id), "no test process to stop"
        assert list(tmp.glob("kodr-junit-*")), "the test run's report directory exists while it runs"
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        out, err = proc.communicate()
        assert code == exits.TERMINATED, (out, err)
        assert "terminated" in err and "kodr resume" in err and "Traceback" not in err
        assert tagged_processes(run_id) == [], "the step's processes died with it"
        assert list(tmp.glob("kodr-junit-*")) == [], "temporary files removed"
        assert store.runs()[0]["state"] == "verifying", "not terminal: resumable"
        (ws / "fast").write_text("")
        resumed = kodr_script("resume", run_id, cwd=ws)
    assert resumed.code == 0, resumed
    assert f"run {run_id}: passed" in resumed.out
