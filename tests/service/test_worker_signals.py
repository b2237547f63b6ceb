"""`kodr worker` as a process: SIGTERM drains (the run in hand finishes, then exit 0), and with no
drain time the run is handed back, unfinished and unowned, for the next worker to resume."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from adapters.workspace import DiskWorkspace
from kodr_core.options import RunOptions
from kodr_core.service import Service
from store.database import default_url, open_store
from store.queue import RunQueue
from tests.e2e.conftest import kodr_env
from tests.service.support import make_project, responder, wait_terminal
from tests.support.scripted_server import ScriptedServer


def _worker(home: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "adapters.cli",
            "worker",
            "--workspace",
            str(home),
            "--poll",
            "0.2",
            "--lease-ttl",
            "3",
            *args,
        ],
        env=kodr_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _setup(tmp_path: Path, base_url: str) -> tuple[Path, Service, str]:
    home = tmp_path / "home"
    home.mkdir()
    store = open_store(default_url(home))
    svc = Service(RunQueue(store))
    src = make_project(tmp_path / "src")
    run_id = svc.request(
        "make add work [fix]", "heal", RunOptions(base_url=base_url, test_command="node --test"), DiskWorkspace(src)
    ).run_id
    return home, svc, run_id


def _gated() -> tuple[threading.Event, object]:
    gate, answer = threading.Event(), responder()

    def model(body: dict) -> object:
        gate.wait(60)
        return answer(body)

    return gate, model


def test_sigterm_lets_the_run_in_hand_finish(tmp_path):
    gate, model = _gated()
    with ScriptedServer(responder=model) as srv:
        home, svc, run_id = _setup(tmp_path, srv.base_url)
        w = _worker(home, "--drain", "60")
        srv.wait_for_requests(1, timeout=60)  # the run is mid-model-call
        w.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert w.poll() is None  # still draining
        gate.set()
        _, err = w.communicate(timeout=90)
    assert w.returncode == 0, err
    assert "drained: 1 run(s) driven" in err
    assert (svc.show(run_id).state, svc.show(run_id).reason) == ("passed", "verification_passed")


def test_sigterm_without_drain_time_hands_the_run_back(tmp_path):
    gate, model = _gated()
    with ScriptedServer(responder=model) as srv:
        home, svc, run_id = _setup(tmp_path, srv.base_url)
        w = _worker(home, "--drain", "0")
        srv.wait_for_requests(1, timeout=60)
        w.send_signal(signal.SIGTERM)
        _, err = w.communicate(timeout=30)
        assert w.returncode == 0 and f"handed back {run_id}" in err, err
        row = svc.queue.get_run(run_id)
        assert row.state != "passed" and row.lease_owner is None  # unfinished, and free at once
        gate.set()
        w2 = _worker(home)
        try:
            wait_terminal(lambda: [svc.show(run_id).state], 90)
        finally:
            w2.send_signal(signal.SIGTERM)
            w2.communicate(timeout=60)
    assert svc.show(run_id).state == "passed"
    events = svc.events(run_id)
    assert any(e.type == "RunResumed" for e in events)
    assert len({e.writer for e in events[1:]}) == 2  # the first worker, then the second
