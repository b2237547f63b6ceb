"""SubprocessRunner against real processes: timeouts, groups, capping, env, orphans."""

import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from adapters.processes import SubprocessRunner, child_env, group_members
from tests.support.loopback import accepting_port

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")

NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node not on PATH")


def alive(pid: int) -> bool:
    """True for a live, non-zombie process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rfind(b")") + 2 :].split()[0] not in (b"Z", b"X")


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return not group_members(pgid)  # only zombies waiting for init to reap them


@needs_node
def test_hung_process_and_its_child_are_killed_at_the_timeout(tmp_path):
    pidfile = tmp_path / "child.pid"
    script = (
        "const {spawn} = require('child_process');"
        f"const c = spawn('sleep', ['300'], {{stdio: 'inherit'}});"
        f"require('fs').writeFileSync({str(pidfile)!r}, String(c.pid));"
        "console.log('started');"
        "setInterval(() => {}, 1000);"
    )
    runner = SubprocessRunner(kill_grace_s=2.0)
    t0 = time.monotonic()
    r = runner.run(["node", "-e", script], cwd=str(tmp_path), timeout_s=1.5)
    elapsed = time.monotonic() - t0
    assert r.timed_out is True and r.exit_code is None and r.error is None
    assert 1.4 < elapsed < 8
    assert "started" in r.stdout  # output written before the kill is kept
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 3
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)
    assert group_gone(child)  # the grandchild was in the node process's group


def test_process_ignoring_sigterm_is_killed_after_the_grace(tmp_path):
    code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\ntime.sleep(300)"
    runner = SubprocessRunner(kill_grace_s=0.5)
    t0 = time.monotonic()
    r = runner.run([sys.executable, "-c", code], cwd=str(tmp_path), timeout_s=1.0)
    assert r.timed_out and r.exit_code is None
    assert time.monotonic() - t0 < 6


def test_leftover_children_are_killed_after_a_normal_exit(tmp_path):
    # The child exits at once but leaves a sleeper in its group, holding stdout open.
    code = "import subprocess, sys\np = subprocess.Popen(['sleep', '300'])\nprint(p.pid)"
    t0 = time.monotonic()
    r = SubprocessRunner().run([sys.executable, "-c", code], cwd=str(tmp_path), timeout_s=30)
    assert time.monotonic() - t0 < 10  # did not wait for the sleeper's EOF
    assert r.exit_code == 0 and not r.timed_out
    sleeper = int(r.stdout.strip())
    deadline = time.monotonic() + 3
    while alive(sleeper) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(sleeper)


def test_exit_code_and_streams(tmp_path):
    code = "import sys; print('to out'); print('to err', file=sys.stderr); sys.exit(3)"
    r = SubprocessRunner().run([sys.executable, "-c", code], cwd=str(tmp_path), timeout_s=30)
    assert r.exit_code == 3 and not r.timed_out
    assert r.stdout == "to out\n" and r.stderr == "to err\n"
    assert b"to out" in r.log and b"to err" in r.log
    assert r.argv == [sys.executable, "-c", code] and r.cwd == str(tmp_path)
    assert r.started_at.endswith("Z") and r.finished_at >= r.started_at
    assert r.duration_ms >= 0


def test_output_is_capped_with_head_and_tail(tmp_path):
    code = "import sys\nsys.stdout.write('HEAD' + 'a' * 200000 + 'TAIL')\nsys.stderr.write('E' * 10)\n"
    runner = SubprocessRunner(head_bytes=1024, tail_bytes=2048)
    r = runner.run([sys.executable, "-c", code], cwd=str(tmp_path), timeout_s=30)
    assert r.stdout.startswith("HEAD") and r.stdout.endswith("TAIL")
    omitted = 200008 - 1024 - 2048
    assert f"\n… [{omitted} bytes omitted] …\n" in r.stdout
    assert len(r.stdout.encode()) < 1024 + 2048 + 100
    assert r.stderr == "E" * 10
    assert len(r.log) >= 200008  # the log keeps far more than the capped view


def test_api_keys_do_not_reach_the_child(tmp_path, monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENROUTER_API_KEY", "KODR_API_KEY", "ANTHROPIC_API_KEY",
                 "SOME_VENDOR_API_KEY", "GITHUB_TOKEN", "MY_SECRET", "KODR_DATABASE_URL"):  # fmt: skip
        monkeypatch.setenv(name, "sk-very-secret")
    monkeypatch.setenv("HARMLESS_VALUE", "visible")
    code = "import os, json; print(json.dumps(dict(os.environ)))"
    r = SubprocessRunner().run(
        [sys.executable, "-c", code], cwd=str(tmp_path), timeout_s=30, env={"EXTRA": "1"}, step_key="k1"
    )
    assert "sk-very-secret" not in r.stdout
    import json

    env = json.loads(r.stdout)
    assert env["HARMLESS_VALUE"] == "visible" and env["EXTRA"] == "1"
    assert env["KODR_STEP_KEY"] == "k1"
    for k, v in {"CI": "1", "NO_COLOR": "1", "FORCE_COLOR": "0", "npm_config_fund": "false",
                 "npm_config_audit": "false", "npm_config_update_notifier": "false"}.items():  # fmt: skip
        assert env[k] == v


def test_child_env_is_pure():
    env = child_env({"PATH": "/bin", "x_token": "t", "OPENAI_API_KEY": "k"}, {"A": "b"}, "s")
    assert env["PATH"] == "/bin" and "x_token" not in env and "OPENAI_API_KEY" not in env
    assert env["A"] == "b" and env["KODR_STEP_KEY"] == "s"


def test_executable_not_found(tmp_path):
    r = SubprocessRunner().run(["kodr-no-such-tool-xyz", "--x"], cwd=str(tmp_path), timeout_s=5)
    assert r.exit_code is None and not r.timed_out
    assert "not found" in r.error and "kodr-no-such-tool-xyz" in r.error


def test_missing_cwd(tmp_path):
    r = SubprocessRunner().run([sys.executable, "-V"], cwd=str(tmp_path / "nope"), timeout_s=5)
    assert r.exit_code is None and "does not exist" in r.error


def test_shell_strings_are_rejected(tmp_path):
    with pytest.raises(TypeError):
        SubprocessRunner().run("echo hi", cwd=str(tmp_path), timeout_s=5)  # type: ignore[arg-type]


def test_workspace_venv_executable_wins(tmp_path):
    bin_ = tmp_path / ".venv" / "bin"
    bin_.mkdir(parents=True)
    tool = bin_ / "pytest"
    tool.write_text("#!/bin/sh\necho from-workspace-venv\n")
    tool.chmod(0o755)
    r = SubprocessRunner().run(["pytest"], cwd=str(tmp_path), timeout_s=10)
    assert r.stdout.strip() == "from-workspace-venv"


def test_kill_orphans_finds_a_tagged_sleeper(tmp_path):
    key = f"test-{uuid.uuid4()}"
    env = child_env(os.environ, None, key)
    # An orphan as an interrupted attempt would leave it: own session, tagged env.
    p = subprocess.Popen(["sleep", "300"], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 3
        runner = SubprocessRunner()
        while time.monotonic() < deadline:  # /proc/<pid>/environ is readable once exec'd
            n = runner.kill_orphans(key)
            if n:
                break
            time.sleep(0.05)
        assert n == 1
        assert p.wait(timeout=5) == -9
        assert runner.kill_orphans(key) == 0
    finally:
        if p.poll() is None:
            p.kill()


# -- the OS sandbox (bubblewrap), as root -------------------------------------------

from adapters.sandbox import Sandbox, probe  # noqa: E402

needs_bwrap = pytest.mark.skipif(probe(shutil.which("bwrap")) is not None, reason="bubblewrap cannot run here")


def boxed(**kw) -> SubprocessRunner:
    return SubprocessRunner(sandbox=Sandbox("required"), **kw)


def sh(runner: SubprocessRunner, script: str, cwd, **kw):
    return runner.run(["sh", "-c", script], cwd=str(cwd), timeout_s=kw.pop("timeout_s", 20), **kw)


@pytest.fixture
def box(tmp_path):
    """A workspace with a .kodr store dir, and a sibling directory an escape would hit."""
    ws, sibling = tmp_path / "ws", tmp_path / "sibling"
    (ws / ".kodr").mkdir(parents=True)
    (ws / ".kodr" / "kodr.db").write_bytes(b"store")
    sibling.mkdir()
    (sibling / "keep.txt").write_text("keep")
    return ws, sibling


@needs_bwrap
def test_sandbox_writes_only_the_workspace_even_as_root(box):
    ws, sibling = box
    res = sh(
        boxed(),
        f"""
        echo in > inside.txt
        echo x > {sibling}/keep.txt; echo x > {sibling}/new.txt
        echo x > /etc/kodr-escape; echo x > /root/kodr-escape; echo x > /dev/shm/kodr-escape
        echo x > .kodr/kodr.db
        mount -o remount,rw / && echo REMOUNTED
        echo x > /tmp/private && cat /tmp/private
        id -u
    """,
        ws,
    )
    assert (ws / "inside.txt").read_text() == "in\n"
    assert (sibling / "keep.txt").read_text() == "keep" and not (sibling / "new.txt").exists()
    assert not os.path.exists("/etc/kodr-escape") and not os.path.exists("/root/kodr-escape")
    assert not os.path.exists("/dev/shm/kodr-escape")
    assert (ws / ".kodr" / "kodr.db").read_bytes() == b"store"  # the run's store is read-only inside
    assert "REMOUNTED" not in res.stdout
    assert res.stdout.split()[-2:] == ["x", str(os.getuid())]  # a private /tmp works; root stays root


@needs_bwrap
def test_sandbox_hides_the_parents_environment(box, tmp_path):
    """kodr's own environment (with a key) is unreachable: new PID namespace, fresh /proc, allowlisted env."""
    ws, _ = box
    code = (
        "import sys; from adapters.sandbox import Sandbox; from adapters.processes import SubprocessRunner\n"
        "r = SubprocessRunner(sandbox=Sandbox('required'))\n"
        "res = r.run(['sh', '-c', 'env; cat /proc/[0-9]*/environ | tr \"\\\\0\" \"\\\\n\"; ls /proc | grep -c \"^[0-9]\"'],"
        " cwd=sys.argv[1], timeout_s=20)\n"
        "print(res.stdout)\n"
    )
    secret = "sk-parent-" + uuid.uuid4().hex
    env = {**os.environ, "OPENAI_API_KEY": secret, "PLAIN_VALUE": "plain-" + secret[-6:]}
    p = subprocess.run(
        [sys.executable, "-c", code, str(ws)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    )
    assert p.returncode == 0, p.stderr
    assert secret not in p.stdout and secret[-6:] not in p.stdout
    assert int(p.stdout.split()[-1]) < 10  # only the sandbox's own few processes are visible


def _sleepers(marker: str) -> list[str]:
    """Live pids whose command line holds ``marker`` (a unique sleep duration)."""
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit() and alive(int(d)):
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(d)
            except OSError:
                pass
    return found


@needs_bwrap
def test_sandbox_kills_every_descendant_however_it_detaches(box):
    """setsid + env -i leaves the group and drops the step tag: only the PID namespace catches it."""
    ws, _ = box
    n = f"{int(uuid.uuid4().int % 10**6)}"
    res = sh(
        boxed(),
        f"""
        setsid env -i sh -c 'sleep 601.{n}' &
        (setsid sh -c 'sleep 602.{n}' &)
        env -i sh -c 'nohup setsid sleep 603.{n} >/dev/null 2>&1 &'
        sleep 0.3; echo started
    """,
        ws,
        step_key="k-" + n,
    )
    assert "started" in res.stdout and res.exit_code == 0
    time.sleep(0.3)
    assert _sleepers(f".{n}") == []


@needs_bwrap
def test_sandbox_timeout_kills_the_namespace(box):
    ws, _ = box
    n = f"{int(uuid.uuid4().int % 10**6)}"
    t0 = time.monotonic()
    res = sh(boxed(kill_grace_s=0.5), f"setsid env -i sh -c 'sleep 604.{n}' & sleep 60", ws, timeout_s=1)
    assert res.timed_out and time.monotonic() - t0 < 10
    time.sleep(0.3)
    assert _sleepers(f".{n}") == []


@needs_bwrap
def test_sandbox_network_only_when_allowed(box):
    ws, _ = box
    with accepting_port() as port:
        probe_code = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3); print('CONNECTED')"
        cut = boxed().run([sys.executable, "-c", probe_code], cwd=str(ws), timeout_s=20, network=False)
        assert "CONNECTED" not in cut.stdout and cut.exit_code != 0
        local = boxed().run(
            [
                sys.executable,
                "-c",
                "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); "
                "s.listen(); c=socket.create_connection(s.getsockname()); print('LOOPBACK')",
            ],
            cwd=str(ws),
            timeout_s=20,
            network=False,
        )
        assert "LOOPBACK" in local.stdout  # tests still get their own loopback
        open_ = boxed().run([sys.executable, "-c", probe_code], cwd=str(ws), timeout_s=20, network=True)
        assert "CONNECTED" in open_.stdout


@needs_bwrap
def test_sandbox_binds_the_package_caches_and_tmp_extras(box, tmp_path, monkeypatch):
    ws, _ = box
    cache = tmp_path / "npm-cache"
    extra = tmp_path / "junit"
    extra.mkdir()
    monkeypatch.setenv("npm_config_cache", str(cache))
    res = sh(boxed(), f'echo c > "$npm_config_cache/x" && echo j > {extra}/r.xml && echo ok', ws, writable=[str(extra)])
    assert res.stdout.strip() == "ok", res.stderr
    assert (cache / "x").read_text() == "c\n" and (extra / "r.xml").read_text() == "j\n"


def test_sandbox_off_and_auto_record_their_confinement():
    assert SubprocessRunner(sandbox=Sandbox("off")).confinement(network=False).sandbox == "none"
    missing = Sandbox("auto", bwrap="/nonexistent/bwrap")
    missing.bwrap = None
    c = missing.confinement(network=False)
    assert c.sandbox == "none" and "not installed" in c.why
    from adapters.sandbox import SandboxUnavailable

    req = Sandbox("required")
    req.bwrap = None
    with pytest.raises(SandboxUnavailable):
        req.confinement(network=False)


def test_captured_output_is_scrubbed(tmp_path):
    from kodr_core.secrets import Scrubber

    runner = SubprocessRunner(scrubber=Scrubber({"s3cr3t-value-123": "MY_TOKEN"}))
    res = runner.run(
        ["sh", "-c", "echo key=s3cr3t-value-123; echo s3cr3t-value-123 >&2"], cwd=str(tmp_path), timeout_s=10
    )
    assert "s3cr3t" not in res.stdout + res.stderr and b"s3cr3t" not in res.log
    assert "[secret:MY_TOKEN]" in res.stdout


@needs_bwrap
def test_a_program_under_tmp_runs_in_the_private_tmp_but_cannot_be_changed(box, tmp_path):
    """A checkout (and its venv) under /tmp, as CI clones often are: the private /tmp would hide
    the program, so its prefix is bound back read-only; its siblings stay hidden."""
    ws, sibling = box
    tool = tmp_path / "venv" / "bin" / "tool"
    tool.parent.mkdir(parents=True)
    tool.write_text('#!/bin/sh\necho RAN; echo x > "$(dirname "$0")/../written" 2>/dev/null || echo READONLY\n')
    tool.chmod(0o755)
    r = boxed().run([str(tool)], cwd=str(ws), timeout_s=20)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.split() == ["RAN", "READONLY"]
    assert not (tmp_path / "venv" / "written").exists()
    seen = sh(boxed(), f"ls {sibling} 2>&1 || echo HIDDEN", ws)
    assert "HIDDEN" in seen.stdout and "keep.txt" not in seen.stdout
