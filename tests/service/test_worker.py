"""The queue and its workers on both backends: a requested run waits with no owner until a
worker claims it, rebuilds its workspace from the store, drives it, and names itself on every event."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from adapters.worker import Worker
from adapters.workspace import DiskWorkspace
from kodr_core.options import RunOptions
from kodr_core.service import RunConflict, Service
from store.queue import RunQueue, Waiter
from tests.service.support import OUTCOMES, make_project, responder, wait_terminal
from tests.support.scripted_server import ScriptedServer


def _request(svc: Service, tmp_path: Path, tag: str, base_url: str, name: str = "up") -> str:
    src = make_project(tmp_path / f"upload-{name}")
    opts = RunOptions(base_url=base_url, test_command="node --test", max_turns=2)
    run_id = svc.request(f"make add work [{tag}]", "heal", opts, DiskWorkspace(src)).run_id
    shutil.rmtree(src)  # like an upload: the worker must rebuild it from the store
    return run_id


def test_requested_run_waits_unowned_then_a_worker_drives_it(store, tmp_path):
    svc = Service(RunQueue(store))
    with ScriptedServer(responder=responder()) as srv:
        ids = {tag: _request(svc, tmp_path, tag, srv.base_url, tag) for tag in OUTCOMES}
        for run_id in ids.values():
            row = store.get_run(run_id)
            assert (row["state"], row["lease_owner"]) == ("requested", None)
        assert RunQueue(store).queue_depth() == 3
        worker = Worker(store, tmp_path / "work", concurrency=2, poll_s=0.2).start()
        try:
            wait_terminal(lambda: [svc.show(i).state for i in ids.values()], 120)
        finally:
            worker.drain(30)
    for tag, run_id in ids.items():
        s = svc.show(run_id)
        assert (s.state, s.reason) == OUTCOMES[tag], (tag, s)
        events = svc.events(run_id)
        assert events[0].writer is None  # requested by the service, unleased
        writers = {(e.writer, e.lease_epoch) for e in events[1:]}
        assert len(writers) == 1 and next(iter(writers))[0].startswith(worker.name), writers
        assert store.verify(run_id).ok
        assert (tmp_path / "work" / run_id / "calc.js").is_file()  # materialized in the work dir
    assert RunQueue(store).queue_depth() == 0


def test_cancel_fences_the_worker_and_kills_its_step(store, tmp_path):
    svc = Service(RunQueue(store), actor="tester")
    with ScriptedServer(responder=responder(delay_s=30)) as srv:  # the model hangs: the run is mid-step
        run_id = _request(svc, tmp_path, "fix", srv.base_url)
        worker = Worker(store, tmp_path / "work", poll_s=0.2, ttl_s=1.5).start()
        try:
            srv.wait_for_requests(1, timeout=60)
            started = time.monotonic()
            cancelled = svc.cancel(run_id)
            assert (cancelled.state, cancelled.reason) == ("failed", "cancelled")
            # the worker's hold ends within a heartbeat; its late append is refused, the history stays
            while worker._holds and time.monotonic() - started < 20:
                time.sleep(0.1)
            assert not worker._holds
        finally:
            worker.drain(5)
    events = svc.events(run_id)
    last = events[-1]
    assert (last.type, last.data["reason"], last.data["facts"]["by"]) == ("StateChanged", "cancelled", "tester")
    assert last.data["facts"]["interrupted"].startswith(run_id)
    assert store.verify(run_id).ok
    with pytest.raises(RunConflict):
        svc.cancel(run_id)


@pytest.mark.postgres
def test_notify_wakes_an_idle_listener(postgres_schema_url):
    from store.database import open_store, upgrade

    upgrade(postgres_schema_url)
    s = open_store(postgres_schema_url)
    q = RunQueue(s)
    assert q.channel and q.channel.startswith("kodr_runs_kodr_t_")
    waiter = Waiter(q)
    woke: list[bool] = []
    t = threading.Thread(target=lambda: woke.append(waiter.wait(10)))
    started = time.monotonic()
    t.start()
    time.sleep(0.3)
    q.announce("r1")
    t.join(10)
    assert woke == [True] and time.monotonic() - started < 5
    assert Waiter(q).wait(0.2) is False
    waiter.close()
    s.close()


HANGING_TEST = """const test = require('node:test');
test('waits a minute', async () => { await new Promise((r) => setTimeout(r, 60000)); });
"""


def test_cancel_kills_the_test_run_in_flight(tmp_path):
    from store.database import open_store, upgrade
    from tests.e2e.conftest import tagged_processes

    url = f"sqlite:///{tmp_path / 'kodr.db'}"
    upgrade(url)
    store = open_store(url)
    svc = Service(RunQueue(store), actor="tester")
    src = make_project(tmp_path / "src")
    (src / "calc.test.js").write_text(HANGING_TEST)
    run_id = svc.request(
        "wait [fix]",
        "heal",
        RunOptions(test_command="node --test", base_url="http://127.0.0.1:9/v1"),
        DiskWorkspace(src),
    ).run_id
    worker = Worker(store, tmp_path / "work", poll_s=0.2, ttl_s=1.5).start()
    try:
        deadline = time.monotonic() + 60
        while not tagged_processes(run_id) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert tagged_processes(run_id), "the test run never started"
        assert svc.events(run_id)[-1].type == "TestsStarted"
        svc.cancel(run_id)
        deadline = time.monotonic() + 10
        while tagged_processes(run_id) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert tagged_processes(run_id) == []  # killed within a heartbeat, not left for a minute
        while worker._holds and time.monotonic() < deadline + 10:
            time.sleep(0.1)
        assert not worker._holds
    finally:
        worker.drain(5)
    last = svc.events(run_id)[-1]
    assert (last.type, last.data["reason"]) == ("StateChanged", "cancelled")
    assert last.data["facts"]["interrupted"] == svc.events(run_id)[-2].data["key"]
    assert store.verify(run_id).ok
    store.close()


def test_a_run_that_breaks_the_worker_every_time_ends_failed(tmp_path):
    from store.database import open_store, upgrade

    url = f"sqlite:///{tmp_path / 'kodr.db'}"
    upgrade(url)
    store = open_store(url)
    svc = Service(RunQueue(store))
    run_id = _request(svc, tmp_path, "fix", "http://127.0.0.1:9/v1")
    calls: list[int] = []

    def broken_model(options: RunOptions) -> None:
        calls.append(1)
        raise RuntimeError("the model factory is broken")

    worker = Worker(store, tmp_path / "work", poll_s=0.1, model_factory=broken_model).start()
    try:
        wait_terminal(lambda: [svc.show(run_id).state], 60)
    finally:
        worker.drain(5)
    s = svc.show(run_id)
    assert (s.state, s.reason) == ("failed", "worker_error")
    assert s.facts["attempts"] == 3 and "RuntimeError: the model factory is broken" in s.facts["error"]
    assert len(calls) == 3  # not reclaimed forever
    assert store.verify(run_id).ok
    store.close()
