"""``replay``, ``audit verify``, ``db upgrade`` and ``demo``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from adapters.cli import exits
from adapters.cli.flags import json_flag, workspace_flag
from adapters.cli.reading import load, no_store, reader, stream, workspace_of
from adapters.cli.root import cli


def _empty_or_absent(path: Path) -> bool:
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


@cli.command()
@click.argument("run_ref", required=False)
@workspace_flag
@click.option(
    "--file",
    "history_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="replay a history saved by `kodr events RUN --json` instead of one in the store",
)
@click.option(
    "--materialize",
    "materialize_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="rebuild the workspace files into DIR",
)
@click.option("--at", "at_seq", type=click.IntRange(1), default=None, help="with --materialize: as of this seq")
@click.option(
    "--rerun",
    "rerun_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="re-execute the run in DIR (empty or new) with the recorded model replies; report divergences",
)
@click.option("--force", is_flag=True, help="with --rerun or --materialize: write into a non-empty DIR")
@json_flag
@click.pass_context
def replay(
    ctx: click.Context,
    run_ref: str | None,
    ws: str | None,
    history_file: str | None,
    materialize_dir: str | None,
    at_seq: int | None,
    rerun_dir: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Check a run's history against today's machine (no side effects) and print its timeline."""
    from adapters import replay as rp
    from kodr_core.errors import UsageError
    from kodr_core.replay import check

    if bool(run_ref) == bool(history_file):
        raise UsageError("give one RUN, or --file FILE")
    if at_seq is not None and not materialize_dir:
        raise UsageError("--at needs --materialize DIR (it says as of which event to rebuild the files)")
    if force and not (materialize_dir or rerun_dir):
        raise UsageError("--force only applies to --materialize or --rerun")
    for flag, target in (("--rerun", rerun_dir), ("--materialize", materialize_dir)):
        if target and not force and not _empty_or_absent(Path(target)):
            raise UsageError(
                f"{flag} {target}: the directory is not empty; its files would be replaced "
                "(give an empty or new directory, or --force)"
            )
    records: Any  # a list, or a stream when only checking
    if history_file:
        if materialize_dir or rerun_dir:
            raise UsageError("--materialize and --rerun need the run's blobs: replay a RUN from the store")
        run_id, records = rp.records_from_file(history_file)
        app = None
    elif not (materialize_dir or rerun_dir or at_seq is not None):  # a check only: streamed, bounded memory
        app, run_id, records = stream(ctx, ws, run_ref or "")
    else:
        app, records, _ = load(ctx, ws, run_ref or "")
        run_id = records[0].run_id if records else str(run_ref)
    if at_seq is not None and at_seq > len(records):
        raise UsageError(f"--at {at_seq}: run {run_id} has {len(records)} events (give 1..{len(records)})")
    report = check(run_id, records)
    out: dict[str, Any] = {
        "run_id": run_id,
        "events": report.events,
        "ok": report.ok,
        "state": report.state,
        "reason": report.reason,
        "illegal": report.illegal,
        "timeline": report.timeline,
    }
    if materialize_dir and report.ok and app is not None:
        manifest = rp.materialize(records, app.store.get_blob, Path(materialize_dir), at_seq)
        out["materialized"] = {"dir": str(Path(materialize_dir).resolve()), "at": at_seq, "files": len(manifest)}
    if rerun_dir and report.ok and app is not None:
        out["rerun"] = _rerun(run_id, records, app, Path(rerun_dir).resolve(), as_json)
    if as_json:
        click.echo(json.dumps(out, indent=2, default=str))
    else:
        _print_replay(out, report, at_seq)
    diverged = bool(out.get("rerun", {}).get("divergences"))
    sys.exit(0 if report.ok and not diverged else exits.CHECK_FAILED)


def _rerun(run_id: str, records: list[Any], app: Any, target: Path, as_json: bool) -> dict[str, Any]:
    from adapters import replay as rp
    from adapters.bootstrap import open_app
    from adapters.cli.progress import Progress
    from adapters.cli.root import logs_silent_unless_asked
    from kodr_core.aggregate import fold
    from kodr_core.options import RunOptions

    logs_silent_unless_asked()  # the re-run drives an engine
    old = fold(run_id, records)
    rp.materialize(records, app.store.get_blob, target, at_seq=1)
    new_app = open_app(target)
    options = RunOptions.of({**old.options, "provider": "replay"})
    model = rp.RecordedModel(rp.recorded_replies(records, app.store.get_blob))
    progress = Progress(quiet=False, stream=sys.stderr if as_json else sys.stdout)
    with new_app.workspace_held():
        new_id = new_app.engine(None, options=options).request(old.task, options, mode=old.mode)
        try:
            new = new_app.drive(new_id, model, progress, options=options)
        finally:
            progress.close()
    return {
        "run_id": new_id,
        "dir": str(target),
        "state": new.state.value,
        "reason": new.reason,
        "divergences": rp.divergences(old, new),
    }


def _print_replay(out: dict[str, Any], report: Any, at_seq: int | None) -> None:
    for t in report.timeline:
        tail = f" [{t['reason']}]" if t["reason"] else ""
        click.echo(f"{t['seq']:>4}  {t['from']} → {t['to']} via {t['trigger']}{tail}")
    for bad in report.illegal:
        click.echo(f"ILLEGAL at seq {bad['seq']}: {bad['error']}")
    click.echo(f"{out['run_id']}: {'ok' if report.ok else 'REJECTED'} ({report.events} events, ends {report.state})")
    if "materialized" in out:
        m = out["materialized"]
        click.echo(f"materialized {m['files']} files into {m['dir']}" + (f" as of seq {at_seq}" if at_seq else ""))
    if "rerun" in out:
        r = out["rerun"]
        click.echo(f"re-run {r['run_id']} in {r['dir']}: {r['state']} ({r['reason']})")
        for d in r["divergences"] or ["no divergence from the recording"]:
            click.echo(f"  {d}")


@cli.group()
def db() -> None:
    """Database maintenance."""


@db.command()
@workspace_flag
@click.pass_context
def upgrade(ctx: click.Context, ws: str | None) -> None:
    """Migrate the database (KODR_DATABASE_URL, or the workspace's SQLite file) to the latest schema."""
    from store.database import database_url
    from store.database import upgrade as do_upgrade

    do_upgrade(database_url(Path(workspace_of(ctx, ws)).resolve()))
    click.echo("database is at the latest schema")


@cli.group()
def audit() -> None:
    """Prove a history was not edited."""


@audit.command()
@click.argument("run_ref", required=False)
@workspace_flag
@json_flag
@click.pass_context
def verify(ctx: click.Context, run_ref: str | None, ws: str | None, as_json: bool) -> None:
    """Verify the hash chain of one run, or of every run; report the first broken link."""
    from kodr_core.errors import RunNotFound, StoreCorrupt

    app = reader(ctx, ws)
    if app is None:
        lost = _anchored_runs(ctx, ws)
        if run_ref and not any(rid.startswith(run_ref) for rid in lost):
            raise RunNotFound(no_store(ctx, ws))
        for rid in lost:
            click.echo(f"{rid}: BROKEN: its head is anchored but the database is gone ({no_store(ctx, ws)})")
        if not lost:
            raise StoreCorrupt(f"{no_store(ctx, ws)}: nothing to verify (a new, emptied or missing database)")
        sys.exit(exits.CHECK_FAILED)
    found = app.store.audit(run_ref)  # raises StoreCorrupt on an empty database
    reports = found.runs
    if as_json:
        body: dict[str, Any] = {rid: r.__dict__ for rid, r in reports.items()}
        if found.blob_problems:
            body["blobs"] = found.blob_problems
        click.echo(json.dumps(body, indent=2, default=str))
    else:
        for rid, r in reports.items():
            click.echo(
                f"{rid}: ok ({r.checked} events)" if r.ok else f"{rid}: BROKEN at seq {r.first_broken_seq}: {r.problem}"
            )
        for problem in found.blob_problems:
            click.echo(f"BROKEN {problem}")
    sys.exit(0 if found.ok else exits.CHECK_FAILED)


def _anchored_runs(ctx: click.Context, ws: str | None) -> list[str]:
    """Runs whose heads are anchored beside a missing SQLite store: a deleted database is not 'nothing'."""
    from adapters.bootstrap import head_anchors
    from store.database import database_url

    root = Path(workspace_of(ctx, ws)).resolve()
    anchors = head_anchors(root, database_url(root))
    return anchors.run_ids() if anchors is not None and anchors.root.is_dir() else []


@cli.command()
@click.option("--keep", type=click.Path(file_okay=False), default=None, help="build the sample project here")
@json_flag
def demo(keep: str | None, as_json: bool) -> None:
    """A complete run with a built-in scripted model on a small sample project (no server needed)."""
    from adapters.cli.progress import Progress
    from adapters.demo import run_demo

    progress = Progress(quiet=False, stream=sys.stderr if as_json else sys.stdout)
    try:
        code = run_demo(keep, as_json, progress)
    finally:
        progress.close()
    sys.exit(code)
