"""The scale test: three `kodr worker` processes on one PostgreSQL, fifty queued runs against a
scripted model over loopback HTTP, one worker SIGKILLed mid-run.

Every run must end with the outcome its script dictates, no step may be executed by two
workers (each event names its writer and lease epoch; an epoch has one writer and epochs
only grow along a run), the killed worker's runs must be finished by another, and
`kodr audit verify` must pass for every run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from adapters.workspace import DiskWorkspace
from kodr_core.options import RunOptions
from kodr_core.service import Service
from store.database import open_store, upgrade
from store.queue import RunQueue
from tests.e2e.conftest import kodr, kodr_env
from tests.service.support import OUTCOMES, make_project, responder, wait_terminal
from tests.support.scripted_server import ScriptedServer

RUNS = 50
TAGS = list(OUTCOMES)


def _worker(url: str, work: Path, log: Path) -> subprocess.Popen:
    work.mkdir()
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "adapters.cli",
            "--log-level",
            "info",
            "worker",
            "--concurrency",
            "2",
            "--work-dir",
            str(work),
            "--lease-ttl",
            "3",
            "--poll",
            "0.5",
            "--workspace",
            str(work),
        ],
        env=kodr_env({"KODR_DATABASE_URL": url}),
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        start_new_session=True,
    )


@pytest.mark.slow
@pytest.mark.postgres
def test_three_workers_fifty_runs_one_killed(postgres_schema_url, tmp_path):
    upgrade(postgres_schema_url)
    store = open_store(postgres_schema_url)
    svc = Service(RunQueue(store))
    src = make_project(tmp_path / "src")
    with ScriptedServer(responder=responder(delay_s=0.4)) as srv:
        opts = RunOptions(base_url=srv.base_url, test_command="node --test", max_turns=2)
        tags = {}
        for i in range(RUNS):
            run_id = svc.request(f"run {i} [{TAGS[i % 3]}]", "heal", opts, DiskWorkspace(src)).run_id
            tags[run_id] = TAGS[i % 3]
        shutil.rmtree(src)  # no run is local: every worker rebuilds workspaces from the store
        assert RunQueue(store).queue_depth() == RUNS
        workers = [_worker(postgres_schema_url, tmp_path / f"w{i}", tmp_path / f"w{i}.log") for i in range(3)]
        victim = workers[0]
        try:
            deadline = time.monotonic() + 120
            held: list[str] = []
            while not held and time.monotonic() < deadline:
                held = [
                    r.run_id
                    for r in RunQueue(store).list_runs(limit=RUNS)
                    if r.lease_owner
                    and f":{victim.pid}:" in r.lease_owner
                    and r.state not in ("requested", "passed", "failed", "stalled")
                    and r.last_seq >= 3
                ]
                time.sleep(0.05)
            assert held, "the first worker never got a run under way"
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait(10)
            wait_terminal(lambda: [r.state for r in RunQueue(store).list_runs(limit=RUNS)], 900)
        finally:
            for w in workers[1:]:
                w.send_signal(signal.SIGTERM)
            for w in workers[1:]:
                w.wait(60)
    assert [w.returncode for w in workers[1:]] == [0, 0], [p.read_text()[-2000:] for p in tmp_path.glob("w*.log")]

    owners_seen: set[str] = set()
    for run_id, tag in tags.items():
        s = svc.show(run_id)
        assert (s.state, s.reason) == OUTCOMES[tag], (run_id, tag, s.state, s.reason)
        events = svc.events(run_id)
        assert events[0].writer is None and all(e.writer for e in events[1:]), run_id
        by_epoch: dict[int, set[str]] = defaultdict(set)
        epochs = []
        for e in events[1:]:
            by_epoch[e.lease_epoch].add(e.writer)
            epochs.append(e.lease_epoch)
        assert all(len(w) == 1 for w in by_epoch.values()), (run_id, dict(by_epoch))
        assert epochs == sorted(epochs), (run_id, epochs)
        # a step's intent and its outcome come from the same writer: no step ran under two owners
        started = {(e.data["key"], e.data["attempt"]): e.writer for e in events if e.type.endswith("Started")}
        for e in events:
            if e.type.endswith(("Finished", "Completed", "Failed", "Applied")) and "attempt" in e.data:
                assert started[(e.data["key"], e.data["attempt"])] == e.writer, (run_id, e.seq)
        owners_seen |= {w for ws in by_epoch.values() for w in ws}
        if run_id in held:
            writers = [e.writer for e in events[1:]]
            assert f":{victim.pid}:" in writers[0], (run_id, writers[0])
            assert f":{victim.pid}:" not in writers[-1], (run_id, writers[-1])
            assert any(e.type == "RunResumed" for e in events), run_id
    assert len({o.split(":")[1] for o in owners_seen}) == 3  # all three worker processes drove runs
    audit = kodr("audit", "verify", "--json", cwd=tmp_path, env={"KODR_DATABASE_URL": postgres_schema_url})
    assert audit.code == 0, audit.out[-2000:] + audit.err[-2000:]
    assert len(audit.json()) == RUNS
    store.close()
