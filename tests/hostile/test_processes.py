"""Writes and process abuse: what a model-written test can do, and what stays true afterwards."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from tests.e2e.conftest import tagged_processes
from tests.hostile.conftest import hostile_run
from tests.support.loopback import accepting_port

PKG = json.dumps({"name": "a", "version": "1.0.0"})


def node_test(body: str) -> str:
    return (
        "const test = require('node:test');\nconst fs = require('fs');\n"
        "const cp = require('child_process');\n" + f"test('hostile', () => {{\n{body}\n}});\n"
    )


def sleepers(marker: str) -> list[int]:
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(d))
            except OSError:
                pass
    return found


# -- envelope writes: refused before a byte is written ---------------------------------


@pytest.mark.parametrize(
    "path", ["../sibling/keep.txt", "{sibling}/new.txt", "link/new.txt", ".kodr/kodr.db", ".git/config"]
)
def test_envelope_writes_outside_are_unsafe(workspace: Path, sibling: Path, path: str) -> None:
    (workspace / "link").symlink_to(sibling, target_is_directory=True)
    (workspace / ".git").mkdir()
    o = hostile_run(workspace, sibling, {"ok.txt": "fine", path.replace("{sibling}", str(sibling)): "pwned"})
    assert (o.state, o.reason) == ("failed", "unsafe_write"), o.result.err
    assert not (workspace / "ok.txt").exists()


# -- what a test process can do (the OS sandbox) ----------------------------------------


def test_a_test_cannot_write_outside_the_workspace(workspace: Path, sibling: Path) -> None:
    body = f"""
      for (const p of ['{sibling}/keep.txt', '{sibling}/new.txt', '/etc/kodr-hostile', '/root/.kodr-hostile',
                       '/usr/local/bin/git']) {{
        try {{ fs.writeFileSync(p, 'pwned'); console.log('WROTE ' + p); }} catch (e) {{ console.log('blocked ' + p); }}
      }}
      fs.writeFileSync('inside.txt', 'ok');
    """
    o = hostile_run(workspace, sibling, {"package.json": PKG, "w.test.js": node_test(body)}, test="node --test")
    assert o.state == "passed", o.result.err
    assert "WROTE" not in json.dumps(o.artifact("tests.json"))
    assert (workspace / "inside.txt").read_text() == "ok"  # the workspace itself is the test's to change
    for p in ("/etc/kodr-hostile", "/root/.kodr-hostile", "/usr/local/bin/git"):
        assert not os.path.exists(p)


def test_a_test_cannot_touch_the_runs_store_or_git(workspace: Path, sibling: Path) -> None:
    (workspace / ".git").mkdir()
    (workspace / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    body = """
      for (const p of ['.kodr/kodr.db', '.git/HEAD', '.git/hooks-pre-commit']) {
        try { fs.writeFileSync(p, 'pwned'); console.log('WROTE ' + p); } catch (e) { console.log('blocked ' + p); }
      }
    """
    o = hostile_run(workspace, sibling, {"package.json": PKG, "s.test.js": node_test(body)}, test="node --test")
    assert o.state == "passed", o.result.err
    assert (workspace / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n"
    assert "WROTE" not in json.dumps(o.artifact("tests.json"))
    assert len(o.events()) > 3  # the store is intact and readable


def test_detached_descendants_die_with_the_step(workspace: Path, sibling: Path) -> None:
    marker = f"{uuid.uuid4().int % 10**6}"
    body = f"""
      cp.spawn('setsid', ['env', '-i', 'sh', '-c', 'sleep 701.{marker}'], {{detached: true, stdio: 'ignore'}}).unref();
      cp.execSync("(setsid sleep 702.{marker} >/dev/null 2>&1 &) ; env -i sh -c 'nohup sleep 703.{marker} >/dev/null 2>&1 &'");
    """
    o = hostile_run(workspace, sibling, {"package.json": PKG, "d.test.js": node_test(body)}, test="node --test")
    assert o.state == "passed", o.result.err
    assert sleepers(f".{marker}") == [] and tagged_processes(o.json["run_id"]) == []


def test_many_processes_die_with_the_step(workspace: Path, sibling: Path) -> None:
    marker = f"{uuid.uuid4().int % 10**6}"
    body = f"for (let i = 0; i < 100; i++) cp.spawn('setsid', ['sleep', '704.{marker}'], {{detached: true, stdio: 'ignore'}}).unref();"
    o = hostile_run(workspace, sibling, {"package.json": PKG, "m.test.js": node_test(body)}, test="node --test")
    assert o.state == "passed", o.result.err
    assert sleepers(f".{marker}") == []


def test_a_hung_test_times_out_and_leaves_nothing(workspace: Path, sibling: Path) -> None:
    marker = f"{uuid.uuid4().int % 10**6}"
    body = f"cp.spawn('setsid', ['env', '-i', 'sleep', '705.{marker}'], {{detached: true, stdio: 'ignore'}}).unref(); while (true) {{}}"
    o = hostile_run(
        workspace,
        sibling,
        {"package.json": PKG, "h.test.js": node_test(body)},
        test="node --test",
        flags=("--test-timeout", "3"),
    )
    assert (o.state, o.reason) == ("timed_out", "test_timeout"), o.result.err
    assert o.artifact("tests.json")["timedOut"]
    assert sleepers(f".{marker}") == []


def test_a_flood_of_output_is_capped(workspace: Path, sibling: Path) -> None:
    body = "const line = 'x'.repeat(1023) + '\\n'; for (let i = 0; i < 40 * 1024; i++) process.stdout.write(line);"
    o = hostile_run(workspace, sibling, {"package.json": PKG, "f.test.js": node_test(body)}, test="node --test")
    assert o.state in ("passed", "failed"), o.result.err
    assert len(o.stored_bytes()) < 30 * 1024 * 1024  # 40 MiB written, the record keeps head and tail
    assert len(json.dumps(o.artifact("tests.json"))) < 200_000


@pytest.mark.parametrize("allow", [False, True])
def test_network_in_tests_only_with_test_network(workspace: Path, sibling: Path, allow: bool) -> None:
    with accepting_port() as port:
        body = f"""
          const r = cp.spawnSync(process.execPath, ['-e',
            "require('net').connect({port}, '127.0.0.1').on('connect', () => {{ console.log('CONNECTED'); process.exit(0); }})"
            + ".on('error', () => process.exit(3))"], {{timeout: 5000}});
          if (String(r.stdout).includes('CONNECTED')) throw new Error('reached the network');
        """
        o = hostile_run(
            workspace,
            sibling,
            {"package.json": PKG, "n.test.js": node_test(body)},
            test="node --test",
            flags=("--test-network",) if allow else (),
        )
    assert o.state == ("failed" if allow else "passed"), o.result.err
    started = next(r.event for r in o.events() if r.type == "TestsStarted")
    assert started.confinement["sandbox"] == "bwrap" and started.confinement["network"] is allow
    assert bool(o.json.get("options", {}).get("test_network", allow)) is allow


def test_sandbox_off_says_so_in_the_events(workspace: Path, sibling: Path) -> None:
    o = hostile_run(
        workspace, sibling, {"package.json": PKG, "a.test.js": node_test("")}, test="node --test", sandbox="off"
    )
    assert o.state == "passed", o.result.err
    started = next(r.event for r in o.events() if r.type == "TestsStarted")
    assert started.confinement["sandbox"] == "none" and started.confinement["mode"] == "off"


def test_sigkill_of_kodr_takes_the_sandboxed_step_with_it(tmp_path: Path) -> None:
    """kodr killed with SIGKILL mid-test: --die-with-parent and the PID namespace leave no orphan at all."""
    import signal
    import time

    from tests.e2e.test_resumers import _model, _run_until_tests_start
    from tests.support.scripted_server import ScriptedServer

    ws = tmp_path / "ws"
    ws.mkdir()
    with ScriptedServer(responder=_model) as srv:
        proc, _store, run_id = _run_until_tests_start(ws, srv, "--sandbox", "required")
        assert tagged_processes(run_id), "the test process was not running"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 5
        while tagged_processes(run_id) and time.monotonic() < deadline:
            time.sleep(0.1)
    assert tagged_processes(run_id) == []
