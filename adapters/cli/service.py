"""kodr as a service: ``kodr serve``, ``kodr worker``, and the clients ``submit``, ``watch``, ``fetch``.

``serve`` runs the HTTP API and the pages with N embedded workers (0 for API only)
on the workspace's store (SQLite) or ``KODR_DATABASE_URL`` (PostgreSQL: API
processes and workers anywhere). ``worker`` is workers alone. The clients speak
only HTTP. Beyond loopback, ``serve`` refuses to start without ``KODR_SERVE_TOKEN``;
the clients send it as a bearer token when it is set.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click
import httpx

from kodr_core.errors import UsageError

TOKEN_ENV = "KODR_SERVE_TOKEN"
EXIT_FOR_STATE = {"passed": 0, "proposed": 0, "failed": 10, "stalled": 11, "timed_out": 12}


def _is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _open_store(workspace: str):  # type: ignore[no-untyped-def]
    from store.database import database_url, open_store

    root = Path(workspace).resolve()
    if not root.is_dir():
        raise UsageError(f"workspace {str(root)!r} is not a directory")
    return root, open_store(database_url(root))


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


@click.command()
@click.option("--workspace", "-w", "ws", default=".", help="where the SQLite store lives (default: cwd)")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@click.option(
    "--workers", type=click.IntRange(0, 64), default=1, show_default=True, help="embedded workers (0: API only)"
)
@click.option(
    "--work-dir", default=None, help="where embedded workers rebuild workspaces (default: <workspace>/.kodr/work)"
)
def serve(ws: str, host: str, port: int, workers: int, work_dir: str | None) -> None:
    """Serve the HTTP API and the web pages, with embedded workers."""
    import uvicorn

    from adapters.http_api import create_app
    from adapters.worker import Worker

    token = os.environ.get(TOKEN_ENV, "").strip() or None
    if not _is_loopback(host) and not token:
        raise UsageError(f"--host {host} is beyond loopback: set {TOKEN_ENV} (clients then send it as a Bearer token)")
    root, store = _open_store(ws)
    worker = None
    if workers:
        worker = Worker(store, Path(work_dir) if work_dir else root / ".kodr" / "work", concurrency=workers).start()
    config = uvicorn.Config(
        create_app(store, token=token, roots=[root]),
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)
    click.echo(f"kodr serving {store.display_url} on http://{host}:{port}/ with {workers} worker(s)", err=True)
    for sig in (signal.SIGTERM, signal.SIGINT):  # uvicorn captures both while it runs and re-raises them
        signal.signal(sig, lambda *_: None)  # after its shutdown: by then the stop is a clean, drained exit
    try:
        server.run()
    finally:
        if worker is not None:
            handed = worker.drain(60)
            if handed:
                click.echo(f"handed back: {', '.join(handed)}", err=True)
        store.close()


@click.command()
@click.option("--workspace", "-w", "ws", default=".", help="where the SQLite store lives (default: cwd)")
@click.option("--concurrency", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--work-dir", default=None, help="where runs' workspaces are rebuilt (default: <workspace>/.kodr/work)")
@click.option(
    "--lease-ttl", type=click.FloatRange(1), default=15.0, show_default=True, help="seconds a silent worker keeps a run"
)
@click.option("--poll", type=click.FloatRange(0.05), default=2.0, show_default=True, help="seconds between idle looks")
@click.option(
    "--drain",
    "drain_s",
    type=click.FloatRange(0),
    default=60.0,
    show_default=True,
    help="on SIGTERM, seconds to let runs in hand finish before handing them back",
)
def worker(ws: str, concurrency: int, work_dir: str | None, lease_ttl: float, poll: float, drain_s: float) -> None:
    """Claim queued runs and runs whose lease expired, and drive them; SIGTERM drains."""
    from adapters.worker import Worker

    root, store = _open_store(ws)
    stop = _stop_on_signals()
    w = Worker(
        store,
        Path(work_dir) if work_dir else root / ".kodr" / "work",
        concurrency=concurrency,
        ttl_s=lease_ttl,
        poll_s=poll,
    )
    click.echo(f"kodr worker {w.name} on {store.display_url}, {concurrency} slot(s)", err=True)
    handed = w.run(stop, drain_s)
    click.echo(
        f"drained: {len(w.driven)} run(s) driven" + (f", handed back {', '.join(handed)}" if handed else ""), err=True
    )
    store.close()


# -- clients ------------------------------------------------------------------------------


def _client(server: str) -> httpx.Client:
    token = os.environ.get(TOKEN_ENV, "").strip()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=httpx.Timeout(60, connect=10))


def _check(resp: httpx.Response) -> Any:
    if resp.status_code >= 400:
        try:
            body = resp.json()
            msg = body.get("error") or body
        except ValueError:
            msg = resp.text[:500]
        raise UsageError(f"server said {resp.status_code}: {msg}")
    return resp


def workspace_archive(root: Path) -> bytes:
    """The files kodr would snapshot (gitignore honoured, .kodr/ and deps left out), as .tar.gz."""
    from adapters.upload import pack
    from adapters.workspace import DiskWorkspace

    ws = DiskWorkspace(root)
    return pack(root, ws.files(), ws.read)


@click.command()
@click.option("-p", "--prompt", "prompt", required=True, help="the task")
@click.option("--server", required=True, help="the kodr service, e.g. http://127.0.0.1:8765")
@click.option("--workspace", "-w", "ws", default=".", help="the project to upload (default: cwd)")
@click.option("--heal", is_flag=True, help="heal the project's failing tests (mode heal)")
@click.option("--test", "test_command", default=None)
@click.option("--install/--no-install", default=None)
@click.option("--max-turns", type=click.IntRange(0, 50), default=None)
@click.option("--provider", default=None)
@click.option("--base-url", default=None, help="the model server as the workers will reach it")
@click.option("--model", "model_name", default=None)
def submit(
    prompt: str,
    server: str,
    ws: str,
    heal: bool,
    test_command: str | None,
    install: bool | None,
    max_turns: int | None,
    provider: str | None,
    base_url: str | None,
    model_name: str | None,
) -> None:
    """Upload the workspace and a task; prints the run id."""
    options = {
        k: v
        for k, v in {
            "test_command": test_command,
            "install": install,
            "max_turns": max_turns,
            "provider": provider,
            "base_url": base_url,
            "model": model_name,
            "heal": True if heal else None,
        }.items()
        if v is not None
    }
    request = {"task": prompt, "mode": "heal" if heal else "run", "options": options}
    data = workspace_archive(Path(ws).resolve())
    with _client(server) as c:
        r = _check(
            c.post(
                "/api/runs",
                data={"request": json.dumps(request)},
                files={"workspace": ("workspace.tar.gz", data, "application/gzip")},
            )
        )
    click.echo(r.json()["run_id"])


@click.command()
@click.argument("run_ref")
@click.option("--server", required=True)
@click.option("--json", "as_json", is_flag=True, help="print each event as a JSON line")
def watch(run_ref: str, server: str, as_json: bool) -> None:
    """Follow a run live until it ends; exits like `kodr run` for its final state."""
    last = 0
    state = None
    with _client(server) as c:
        for _ in range(1000):  # reconnect with Last-Event-ID when the stream drops
            try:
                with c.stream(
                    "GET",
                    f"/api/runs/{run_ref}/stream",
                    headers={"Last-Event-ID": str(last)},
                    timeout=httpx.Timeout(60, read=120),
                ) as resp:
                    if resp.status_code >= 400:
                        resp.read()
                        _check(resp)
                    for line in resp.iter_lines():
                        if not line.startswith("data: "):
                            continue
                        e = json.loads(line[6:])
                        last = e["seq"]
                        if as_json:
                            click.echo(json.dumps(e))
                        elif e["type"] == "StateChanged":
                            d = e["data"]
                            tail = f" [{d['reason']}]" if d.get("reason") else ""
                            click.echo(f"{e['seq']:>4}  {d['from_state']} → {d['to_state']} via {d['trigger']}{tail}")
                        if e["type"] == "StateChanged" and e["data"].get("outcome"):
                            state = e["data"]["to_state"]
                break
            except httpx.TransportError:
                continue
        if state is None:
            state = _check(c.get(f"/api/runs/{run_ref}")).json()["state"]
    sys.exit(EXIT_FOR_STATE.get(state, 1))


@click.command()
@click.argument("run_ref")
@click.argument("target", type=click.Path(file_okay=False))
@click.option("--server", required=True)
def fetch(run_ref: str, target: str, server: str) -> None:
    """Download a run's files as of its last event into TARGET."""
    from adapters.upload import extract

    with _client(server) as c:
        data = _check(c.get(f"/api/runs/{run_ref}/workspace.tar.gz")).content
    dest = Path(target)
    n = extract(data, dest)
    click.echo(f"{n} files into {dest.resolve()}")
