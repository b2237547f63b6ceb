"""The Node project the whole-process benchmarks heal, its scripted repairs, and kodr run on it as a user runs it.

Shared by ``bench/orchestration.py`` and ``bench/heal_turn.py``:

- ``node_project/``: a real Node project (``node:test``) with four pinned dependencies
  (ajv 8.17.1, express 4.21.2, lodash 4.17.21, yargs 17.7.2; 94 packages in the committed
  ``package-lock.json``, each with its sha512 integrity), six test files (18 tests) of which
  one fails: ``calc.js``'s ``add`` subtracts. :func:`template` copies it and runs ``npm ci``
  once (the only registry traffic; npm keeps what it fetched in its cache, ``~/.npm``), and
  :func:`fresh_workspace` copies that template for each measured process.
- ``REPAIRS``: what the scripted model answers, one reply per heal turn: two repairs that
  change ``calc.js`` and still fail, then the fix.
- :class:`ModelServer`: ``tests/support/scripted_server.py``'s server on loopback answering
  ``REPAIRS`` in order, each after ``delay_s``; it records each chat request's arrival time
  and body (both sides of a benchmark call the same kind of server, so turn boundaries are
  measured the same way on both).
- :func:`run_kodr`: the venv's ``kodr heal --install --test "node --test"`` as a whole
  process, timed from spawn to exit, and :func:`load_events` / :func:`check_heal_run` to
  read and check what it recorded.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.scripted_server import ScriptedServer, Turn  # noqa: E402 - after the sys.path set-up

FIXTURE = Path(__file__).resolve().parent / "node_project"
KODR = Path(sys.executable).parent / "kodr"
TEST_COMMAND = "node --test"
FAILING_FILE = "calc.test.js"
BUGGY = "return a - b;"
#: (what the repair does, the line it puts in place of the bug), one per heal turn
REPAIRS: list[tuple[str, str]] = [
    ("still failing", "return a * b;"),
    ("still failing", "return a + b + 1;"),
    ("fix", "return a + b;"),
]
PROCESS_TIMEOUT_S = 900


def repaired_calc(line: str) -> str:
    text = (FIXTURE / "calc.js").read_text()
    if text.count(BUGGY) != 1:
        raise SystemExit(f"{FIXTURE / 'calc.js'} no longer holds the bug {BUGGY!r} once")
    return text.replace(BUGGY, line)


def envelope(line: str) -> dict[str, Any]:
    """The model's reply for one repair: kodr's envelope, the whole file."""
    return {"summary": "fix add", "notes": None, "files": [{"path": "calc.js", "content": repaired_calc(line)}]}


def child_env() -> dict[str, str]:
    """The environment both sides' processes get (no store URL from the caller's shell)."""
    return {k: v for k, v in os.environ.items() if k not in ("KODR_DATABASE_URL", "PYTHONDONTWRITEBYTECODE")}


def template(root: Path) -> Path:
    """``node_project`` copied to ``root/template`` with its dependencies installed (``npm ci``, not measured)."""
    dest = root / "template"
    shutil.copytree(FIXTURE, dest, ignore=shutil.ignore_patterns("node_modules", ".kodr"))
    proc = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
        cwd=dest,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0 or not (dest / "node_modules" / "express" / "package.json").is_file():
        raise SystemExit(f"setup: npm ci failed (exit {proc.returncode}):\n{(proc.stderr or proc.stdout)[-2000:]}")
    return dest


def fresh_workspace(tpl: Path, dest: Path) -> Path:
    """A copy of the installed template: every measured process starts from the same files."""
    shutil.copytree(tpl, dest, symlinks=True)
    return dest


def install_argv(ws: Path) -> list[str]:
    """The install command kodr's own plan picks for the workspace (``npm ci …``: there is a lockfile)."""
    from kodr_core.install_plan import plan_install

    plan = plan_install({p.name for p in ws.iterdir() if p.is_file()})
    if len(plan.commands) != 1:
        raise SystemExit(f"expected one install command for the project, the plan has {plan.commands}")
    return list(plan.commands[0])


class ModelServer:
    """The scripted model on loopback: ``REPAIRS`` in order, each reply after ``delay_s``.

    ``arrivals`` holds each chat request's arrival (``time.time()``, before the delay) and
    ``bodies`` the request bodies, in order. A request past the script gets HTTP 500.
    """

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.arrivals: list[float] = []
        self.bodies: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._srv = ScriptedServer(responder=self._respond)

    def _respond(self, body: dict[str, Any]) -> Turn:
        with self._lock:
            self.arrivals.append(time.time())
            self.bodies.append(body)
            n = len(self.arrivals)
        if n > len(REPAIRS):
            return Turn(status=500, error=f"the benchmark scripts {len(REPAIRS)} replies; this is request {n}")
        return Turn(content=json.dumps(envelope(REPAIRS[n - 1][1])), delay_s=self.delay_s)

    @property
    def base_url(self) -> str:
        return self._srv.base_url

    def __enter__(self) -> ModelServer:
        self._srv.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._srv.stop()


@dataclass
class Process:
    """One whole process: spawn and exit on the wall clock (``time.time()``), the time between by perf_counter."""

    argv: list[str]
    spawned_at: float
    exited_at: float
    wall_s: float
    returncode: int
    stdout: str
    stderr: str
    result: dict[str, Any] = field(default_factory=dict)


def run_process(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> Process:
    spawned_at, t0 = time.time(), time.perf_counter()
    proc = subprocess.run(
        argv,
        cwd=cwd,
        env=env or child_env(),
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT_S,
        check=False,
    )
    wall = time.perf_counter() - t0
    return Process(argv, spawned_at, spawned_at + wall, wall, proc.returncode, proc.stdout, proc.stderr)


def run_kodr(ws: Path, base_url: str, *, sandbox: str | None = None) -> Process:
    """``kodr heal --install --test "node --test"`` on ``ws`` against the model at ``base_url``, as a user runs it."""
    argv = [str(KODR), "heal", "-w", str(ws), "--install", "--test", TEST_COMMAND, "--base-url", base_url,
            "--model", "scripted", "--max-turns", str(len(REPAIRS)), "--json", "-q"]  # fmt: skip
    if sandbox:
        argv += ["--sandbox", sandbox]
    proc = run_process(argv, ws)
    try:
        proc.result = json.loads(proc.stdout)
    except ValueError:
        raise SystemExit(f"kodr printed no JSON result (exit {proc.returncode}):\n{proc.stderr[-3000:]}") from None
    return proc


def load_events(ws: Path, run_id: str) -> list[Any]:
    """The run's recorded events, read from the workspace's store after the process ended."""
    from store.database import default_url, open_store

    store = open_store(default_url(ws))
    try:
        return store.load(run_id)
    finally:
        store.close()


def ts(recorded_at: str) -> float:
    """An event's ``recorded_at`` as ``time.time()`` seconds."""
    return datetime.fromisoformat(recorded_at.replace("Z", "+00:00")).timestamp()


def check_heal_run(proc: Process, records: list[Any]) -> None:
    """The run did what the benchmarks claim: installed at turn 0 and ran the full suite (failing), then on
    every heal turn skipped the install (no manifest changed) and ran the failing file first; the full
    suite only on the turn whose failing file passed; passed at the last turn."""
    out, turns = proc.result, len(REPAIRS)
    if (out.get("state"), out.get("reason"), out.get("heal_turn")) != ("passed", "verification_passed", turns):
        raise SystemExit(
            f"kodr's run ended {out.get('state')} ({out.get('reason')}) at turn {out.get('heal_turn')}, "
            f"not passed at turn {turns}: {out.get('detail')}\n{proc.stderr[-2000:]}"
        )
    for turn in range(turns + 1):
        mine = [r for r in records if getattr(r.event, "turn", None) == turn]
        installs = [r for r in mine if r.type == "InstallStarted"]
        skipped = [r for r in mine if r.type == "InstallSkipped"]
        started = [r.event for r in mine if r.type == "TestsStarted"]
        finished = [r.event for r in mine if r.type == "TestsFinished"]
        if turn == 0:
            ok = (
                len(installs) == 1
                and [s.scope for s in started] == ["full"]
                and finished[0].result.get("exitCode") != 0
            )
        else:
            scopes = ["failing", "full"] if turn == turns else ["failing"]
            ok = (
                not installs
                and len(skipped) == 1
                and [s.scope for s in started] == scopes
                and started[0].files == [FAILING_FILE]
            )
        if not ok:
            raise SystemExit(f"kodr's turn {turn} did not do what the benchmark claims: {[r.type for r in mine]}")


def git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True, check=False).stdout.strip()  # fmt: skip
    return out.stdout.strip() + ("+changes" if dirty else "")


def machine() -> dict[str, Any]:
    """The machine line: what the figures were measured on, and how busy it was."""

    def version(argv: list[str]) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip()
        except OSError:
            return "missing"

    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": git_commit(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, {platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "node": version(["node", "--version"]),
        "npm": version(["npm", "--version"]),
        "load_before": [round(x, 2) for x in os.getloadavg()],
    }


def machine_line(m: dict[str, Any]) -> str:
    load = m.get("load_after") or m["load_before"]
    return (
        f"{m['date']}, commit {m['commit']}, {m['machine']}, Python {m['python']}, node {m['node']}, "
        f"npm {m['npm']}, load average {m['load_before'][0]:.2f} before / {load[0]:.2f} after"
    )


def bench_args(doc: str, argv: list[str] | None, *, repeat_help: str, delay_s: float) -> tuple[Any, Any]:
    """The two whole-process benchmarks' shared flags, parsed; and ``say`` (progress on stderr with --json)."""
    import argparse

    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help=f"{repeat_help} (default 5)")
    ap.add_argument(
        "--delay",
        type=float,
        default=delay_s,
        help=f"the model server's delay per reply, seconds (default {delay_s:g})",
    )
    ap.add_argument(
        "--sandbox",
        choices=["auto", "required", "off"],
        default=None,
        help="kodr's --sandbox (default: not given, i.e. auto)",
    )
    ap.add_argument("--json", action="store_true", help="print the figures as JSON (progress on stderr)")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else (lambda *a: print(*a, flush=True))
    return args, say
