"""Commands that only read the store: ``runs``, ``show``, ``events``, ``explain``, ``artifacts``.

They open the store with :func:`adapters.bootstrap.open_reader`, which creates
nothing: with no store yet they say there is nothing (``artifacts`` is the
exception: it writes the artifact files again, on purpose).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from adapters.cli.flags import json_flag, workspace_flag
from adapters.cli.root import cli

if TYPE_CHECKING:
    from collections.abc import Iterator

    from adapters.bootstrap import Reading
    from kodr_core.aggregate import Run
    from kodr_core.events import RecordedEvent

#: Payload fields that are plumbing, not facts: left out of `kodr events`.
_PLUMBING = {
    "key",
    "request_blob",
    "response_blob",
    "context_blob",
    "log_blob",
    "manifest",
    "base_snapshot",
    "idempotency_key",
    "prev_hash",
    "hash",
    "logBlob",
    "startedAt",
    "finishedAt",
    "snapshot_skipped",
}


def workspace_of(ctx: click.Context, ws: str | None) -> str:
    return ws or ctx.find_root().obj.get("workspace") or "."


def reader(ctx: click.Context, ws: str | None) -> Reading | None:
    from adapters.bootstrap import open_reader

    return open_reader(workspace_of(ctx, ws))


def no_store(ctx: click.Context, ws: str | None) -> str:
    from adapters.bootstrap import store_location

    return f"no runs yet: there is no store at {store_location(workspace_of(ctx, ws))}"


def history(ctx: click.Context, ws: str | None, run_ref: str) -> tuple[Reading, str, list[RecordedEvent]]:
    """A run's events, from an id, a unique prefix, or 'last' (no fold: `kodr events` needs none)."""
    from kodr_core.errors import RunNotFound

    app = reader(ctx, ws)
    if app is None:
        raise RunNotFound(no_store(ctx, ws))
    run_id = app.store.resolve(run_ref)
    return app, run_id, app.store.load(run_id)


def load(ctx: click.Context, ws: str | None, run_ref: str) -> tuple[Reading, list[RecordedEvent], Run]:
    """A run's history and its fold, from an id, a unique prefix, or 'last'."""
    from kodr_core.aggregate import fold

    app, run_id, records = history(ctx, ws, run_ref)
    return app, records, fold(run_id, records)


def stream(ctx: click.Context, ws: str | None, run_ref: str) -> tuple[Reading, str, Iterator[RecordedEvent]]:
    """A run's history as a stream (pages read on demand): bounded memory for a long run."""
    from kodr_core.errors import RunNotFound

    app = reader(ctx, ws)
    if app is None:
        raise RunNotFound(no_store(ctx, ws))
    run_id = app.store.resolve(run_ref)
    return app, run_id, app.store.iter_events(run_id)


@cli.command()
@workspace_flag
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True, help="show the newest N runs")
@click.option("--all", "all_runs", is_flag=True, help="show every run")
@json_flag
@click.pass_context
def runs(ctx: click.Context, ws: str | None, limit: int, all_runs: bool, as_json: bool) -> None:
    """List the runs in the store, newest first, with their workspace."""
    from kodr_core.errors import UsageError

    if all_runs and ctx.get_parameter_source("limit") is click.core.ParameterSource.COMMANDLINE:
        raise UsageError("give --limit N or --all, not both")
    app = reader(ctx, ws)
    rows = [] if app is None else app.store.runs(limit=None if all_runs else limit + 1)
    more = not all_runs and len(rows) > limit
    rows = rows if all_runs else rows[:limit]
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        click.echo(no_store(ctx, ws) if app is None else f"no runs yet in {app.store.display_url}")
        return
    for r in rows:
        reason = f" ({r['reason']})" if r.get("reason") else ""
        task = " ".join(str(r.get("task") or "").split())
        click.echo(
            f"{r['run_id']}  {r['state']}{reason}  turn {r['heal_turn']}  {r.get('created_at') or '-'}  "
            f"{r.get('workspace') or '-'}  {task[:60]}"
        )
    if more:
        click.echo(f"(the newest {limit} shown: --limit N or --all for more)")


def _settings(options: dict[str, Any]) -> list[str]:
    from kodr_core.options import RunOptions

    full = RunOptions.of(options).model_dump()
    return [f"{k}={json.dumps(v) if isinstance(v, str) else v}" for k, v in full.items() if k != "plan"] + (
        [f"plan=({len(full['plan'])} chars)"] if full.get("plan") else []
    )


@cli.command()
@click.argument("run_ref")
@workspace_flag
@json_flag
@click.pass_context
def show(ctx: click.Context, run_ref: str, ws: str | None, as_json: bool) -> None:
    """One run: state, outcome, settings and where its artifacts are."""
    from adapters.cli.running import summary
    from kodr_core.aggregate import fold

    app, run_id, events = stream(ctx, ws, run_ref)
    run = fold(run_id, events)
    data = summary(app, run) | {
        "task": run.task,
        "mode": run.mode,
        "workspace": run.workspace,
        "options": run.options,
        "created_at": run.created_at,
        "updated_at": run.updated_at,
    }
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    for k in (
        "run_id",
        "state",
        "reason",
        "detail",
        "mode",
        "task",
        "workspace",
        "heal_turn",
        "last_seq",
        "created_at",
        "updated_at",
        "artifacts",
        "next",
    ):
        click.echo(f"{k:>11}: {data[k]}")
    import textwrap

    lines = textwrap.wrap(" ".join(_settings(run.options)), width=100, break_long_words=False) or ["-"]
    click.echo(f"{'settings':>11}: " + "\n             ".join(lines))


def key_facts(rec: RecordedEvent) -> str:
    """An event's facts on one line: scalars and short lists, plumbing (keys, blobs) left out."""
    e: Any = rec.event
    if rec.type == "StateChanged":
        text = f"{e.from_state} → {e.to_state} via {e.trigger}" + (f" [{e.reason}]" if e.reason else "")
        return text + (f" turn {e.heal_turn}" if e.to_state == "healing" else "")
    parts = []
    for k, v in e.payload().items():
        if k in _PLUMBING or v in (None, [], {}, ""):
            continue
        if isinstance(v, dict):
            v = {
                kk: vv
                for kk, vv in v.items()
                if isinstance(vv, (int, float, str, bool)) and vv != "" and kk not in _PLUMBING
            }
            shown = " ".join(f"{kk}={_short(vv)}" for kk, vv in list(v.items())[:8])
            parts.append(f"{k}{{{shown}}}")
        elif isinstance(v, list):
            parts.append(f"{k}=[{len(v)}]" if v and isinstance(v[0], dict) else f"{k}={_short(v)}")
        else:
            parts.append(f"{k}={_short(v)}")
    return " ".join(parts)


def _short(v: Any, limit: int = 60) -> str:
    s = " ".join(str(v).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


@cli.command()
@click.argument("run_ref")
@workspace_flag
@json_flag
@click.pass_context
def events(ctx: click.Context, run_ref: str, ws: str | None, as_json: bool) -> None:
    """The run's events, in order, each with its key facts."""
    _, _, records = history(ctx, ws, run_ref)
    if as_json:
        rows = [
            {
                "run_id": r.run_id,
                "seq": r.seq,
                "type": r.type,
                "schema_version": r.event.VERSION,
                "recorded_at": r.recorded_at,
                "data": r.event.payload(),
                "prev_hash": r.prev_hash,
                "hash": r.hash,
            }
            for r in records
        ]
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    click.echo(f"run {records[0].run_id if records else run_ref}: {len(records)} events")
    for r in records:
        click.echo(f"{r.seq:>4}  {r.recorded_at}  {r.type:<18} {key_facts(r)}")


@cli.command()
@click.argument("run_ref")
@workspace_flag
@click.pass_context
def artifacts(ctx: click.Context, run_ref: str, ws: str | None) -> None:
    """Write a run's artifact files again from its events and blobs (they are views of the store)."""
    from adapters.artifacts import ArtifactWriter, run_dir

    app, records, run = load(ctx, ws, run_ref)
    ArtifactWriter(str(app.root), app.store.get_blob).refresh(run.run_id, records)
    click.echo(str(run_dir(str(app.root), run.run_id)))


@cli.command(name="explain")
@click.argument("run_ref")
@workspace_flag
@json_flag
@click.pass_context
def explain_cmd(ctx: click.Context, run_ref: str, ws: str | None, as_json: bool) -> None:
    """Why the run ended where it did: each turn, the stop rule and its evidence, the best turn."""
    from kodr_core.explain import explain, render_text

    x = explain(load(ctx, ws, run_ref)[2])
    click.echo(json.dumps(x, indent=2, default=str) if as_json else render_text(x))
