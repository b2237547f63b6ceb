"""Benchmark the queue: how run throughput grows with workers when a run's time is model latency.

    .venv/bin/python bench/workers.py [--runs N] [--latency S] [--workers 1,2,4] [--backend sqlite|postgres] [--json]

Each configuration queues ``--runs`` runs through the service layer (``Service.request``,
as ``POST /api/runs`` does) and starts one :class:`adapters.worker.Worker` with that many
slots on the same store; the clock runs from the workers' start to the last run's terminal
event. Every run is a real run: a scripted OpenAI-compatible server on loopback HTTP
answers each model call after ``--latency`` seconds (1 s by default). Like many local
models, it needs one retry: its first answer is not JSON, kodr quotes the validation error
back, and the second answer fixes ``calc.js``. The worker rebuilds each run's workspace from
the store, writes the fix and runs ``node --test`` once (requested → proposing → applied →
verifying → passed): two model calls, ~2 s of latency, against well under a second of
kodr and node on an idle machine. Each configuration must end with every run ``passed``.

The figure is runs per second, and the speed-up of N workers over one, measured in the
same invocation (target: 4 workers >= 3.5x one). ``--backend postgres`` uses
``KODR_TEST_POSTGRES_URL`` (a fresh schema per configuration, dropped afterwards).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa

import adapters.openai_client  # noqa: F401 - imported before any clock starts, so no configuration pays it
from adapters.worker import Worker
from adapters.workspace import DiskWorkspace
from kodr_core.options import RunOptions
from kodr_core.service import Service
from store.database import normalise_url, open_store, upgrade
from store.queue import RunQueue
from tests.service.support import make_project, responder
from tests.support.scripted_server import ScriptedServer

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _postgres_schema() -> tuple[str, callable]:  # type: ignore[valid-type]
    admin_url = normalise_url(os.environ.get("KODR_TEST_POSTGRES_URL", PG_DEFAULT))
    schema = f"kodr_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()

    url = sa.make_url(admin_url).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False), drop


def measure(workers: int, runs: int, base_url: str, backend: str, tmp: Path) -> dict[str, float]:
    drop = None
    if backend == "postgres":
        url, drop = _postgres_schema()
    else:
        url = f"sqlite:///{tmp / f'w{workers}' / 'kodr.db'}"
    upgrade(url)
    store = open_store(url)
    try:
        svc = Service(RunQueue(store))
        src = make_project(tmp / f"src{workers}")
        opts = RunOptions(base_url=base_url, test_command="node --test", max_turns=1)
        for i in range(runs):
            svc.request(f"bench {i} [retry]", "run", opts, DiskWorkspace(src))
        shutil.rmtree(src)  # as after an upload: each run's workspace is rebuilt from the store
        worker = Worker(store, tmp / f"work{workers}", concurrency=workers, poll_s=0.05)
        started = time.perf_counter()
        worker.start()
        queue = RunQueue(store)
        while True:  # one projection query per look: the watcher must not steal the workers' CPU
            states = [r.state for r in queue.list_runs(limit=runs)]
            if all(s in ("passed", "failed", "stalled", "timed_out") for s in states):
                break
            time.sleep(0.05)
        took = time.perf_counter() - started
        worker.drain(10)
        if set(states) != {"passed"}:
            raise SystemExit(f"{workers} worker(s): not every run passed: {states}")
        return {"workers": workers, "runs": runs, "seconds": round(took, 2), "runs_per_s": round(runs / took, 3)}
    finally:
        store.close()
        if drop:
            drop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=12)
    ap.add_argument("--latency", type=float, default=1.0, help="seconds the model server waits before answering")
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--backend", choices=["sqlite", "postgres"], default="postgres")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    counts = [int(n) for n in args.workers.split(",")]
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="kodr-bench-workers-") as d,
        ScriptedServer(responder=responder(delay_s=args.latency)) as srv,
    ):
        for n in counts:
            row = measure(n, args.runs, srv.base_url, args.backend, Path(d))
            rows.append(row)
            print(
                f"{n} worker(s): {row['runs']} runs in {row['seconds']} s, {row['runs_per_s']} runs/s", file=sys.stderr
            )
    base = rows[0]["runs_per_s"]
    for r in rows:
        r["speedup"] = round(r["runs_per_s"] / base, 2)
    if args.json:
        print(json.dumps({"backend": args.backend, "latency_s": args.latency, "rows": rows}, indent=2))
    else:
        print(f"backend {args.backend}, model latency {args.latency} s, {args.runs} runs per configuration")
        print("| workers | seconds | runs/s | speed-up over 1 |")
        print("|---|---|---|---|")
        for r in rows:
            print(f"| {r['workers']} | {r['seconds']} | {r['runs_per_s']} | {r['speedup']}x |")


if __name__ == "__main__":
    main()
