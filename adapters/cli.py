"""The ``kodr`` command line: the entry point users reach for.

Exit codes: 0 passed (or proposed, for --dry-run); 10 failed; 11 stalled;
12 timed_out; 2 refused input or bad usage; 4 another process owns the run;
5 the store is unavailable; 6 no such run; 1 any other error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import structlog
from rich.console import Console
from rich.markup import escape

from adapters import logs
from adapters.artifacts import run_dir
from adapters.bootstrap import App, model_for, open_app
from adapters.cli_models import probe
from kodr_core import events as ev
from kodr_core.aggregate import Run, fold
from kodr_core.artifacts import proposal_patch
from kodr_core.errors import KodrError, UsageError
from kodr_core.explain import explain, render_text
from kodr_core.options import RunOptions
from kodr_core.states import State

EXIT_FOR_STATE = {State.PASSED: 0, State.PROPOSED: 0, State.FAILED: 10, State.STALLED: 11, State.TIMED_OUT: 12}

err = Console(stderr=True, highlight=False, soft_wrap=True)
log = structlog.get_logger("kodr")


class Progress:
    """Prints each transition, with a spinner while an install or a test run is going on."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self._status = None

    def __call__(self, rec: ev.RecordedEvent) -> None:
        e = rec.event
        structlog.contextvars.bind_contextvars(run_id=rec.run_id, seq=rec.seq)
        log.info("event", type=rec.type)
        if self.quiet:
            return
        if self._status is not None and isinstance(e, (ev.InstallFinished, ev.TestsFinished, ev.ModelCallCompleted, ev.ModelCallFailed)):
            self._status.stop()
            self._status = None
        if isinstance(e, ev.StateChanged):
            tail = escape(f" [{e.reason}]") if e.reason else ""
            turn = f" (turn {e.heal_turn})" if e.to_state == "healing" else ""
            err.print(f"  {e.from_state} → [bold]{e.to_state}[/bold]{turn} via {e.trigger}{tail}")
        elif isinstance(e, (ev.InstallStarted, ev.TestsStarted, ev.ModelCallStarted)) and err.is_terminal:
            what = {"InstallStarted": "installing", "TestsStarted": "running tests",
                    "ModelCallStarted": "waiting for the model"}[rec.type]
            self._status = err.status(f"{what} (attempt {e.attempt})…")
            self._status.start()
        elif isinstance(e, ev.TestsFinished):
            r = e.result
            err.print(f"    tests ({e.scope}): {r.get('passed')} passed, {r.get('failed')} failed, "
                      f"{r.get('skipped')} skipped, exit {r.get('exitCode')}, {r.get('durationMs')} ms")
        elif isinstance(e, ev.InstallFinished):
            r = e.result
            err.print(f"    install: `{r.get('command')}` exit {r.get('exitCode')}, {r.get('durationMs')} ms")
        elif isinstance(e, ev.ProposalRejected):
            err.print(f"    invalid model output: {e.error}")
        elif isinstance(e, ev.WritesRefused):
            err.print(f"    refused write {e.path!r}: {e.why}")


def _app(ctx: click.Context, workspace: str | None) -> App:
    return open_app(workspace or ctx.obj.get("workspace") or ".")


def _load(app: App, run_ref: str) -> tuple[list[ev.RecordedEvent], Run]:
    """A run's history and its fold, from an id, a unique prefix, or 'last'."""
    run_id = app.store.resolve(run_ref)
    records = app.store.load(run_id)
    return records, fold(run_id, records)


def _summary(app: App, run: Run) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "state": run.state.value,
        "outcome": run.outcome,
        "reason": run.reason,
        "heal_turn": run.heal_turn,
        "last_seq": run.last_seq,
        "artifacts": str(run_dir(app.workspace.root, run.run_id)),
        "facts": dict(run.transitions[-1].facts) if run.transitions else {},
    }


def _finish(app: App, run: Run, as_json: bool) -> None:
    s = _summary(app, run)
    if as_json:
        click.echo(json.dumps(s, indent=2, default=str))
    else:
        reason = f" ({run.reason})" if run.reason else ""
        err.print(f"run {run.run_id}: [bold]{run.state.value}[/bold]{reason}")
        err.print(f"artifacts: {s['artifacts']}")
    sys.exit(EXIT_FOR_STATE.get(run.state, 1))


def _drive(app: App, run_id: str, options: RunOptions, quiet: bool, *, resume: bool = False,
           overrides: dict | None = None) -> Run:
    model = None
    if options.base_url or options.provider != "openai-compatible":
        model = model_for(options)
        if options.tools:
            from adapters.tool_loop import ToolLoopModel

            model = ToolLoopModel(model, app.workspace, max_steps=options.tool_steps, local=model.config.local)
    return app.drive(run_id, model, Progress(quiet), resume=resume, overrides=overrides)


def run_options(**kw: Any) -> RunOptions:
    return RunOptions(**{k: v for k, v in kw.items() if v is not None})


#: CLI flag names that differ from their RunOptions field.
_OPTION_OF_FLAG = {"model_name": "model", "repair_timeout": "repair_timeout_s", "model_timeout": "model_timeout_s",
                   "test_timeout": "test_timeout_s", "stall_timeout": "stall_timeout_s",
                   "install_timeout": "install_timeout_s"}


def _options_from_flags(flags: dict[str, Any], **extra: Any) -> RunOptions:
    """RunOptions from the shared model and loop flags of `run` and `heal`."""
    return run_options(**{_OPTION_OF_FLAG.get(k, k): v for k, v in flags.items()}, **extra)


def _model_flags(f):
    f = click.option("--provider", default=None, help="lmstudio|ollama|llamacpp|vllm|openai|openrouter|openai-compatible")(f)
    f = click.option("--base-url", default=None, help="OpenAI-compatible base URL, e.g. http://localhost:1234/v1")(f)
    f = click.option("--model", "model_name", default=None, help="model id on the server")(f)
    return f


def _loop_flags(f):
    f = click.option("--install/--no-install", default=None, help="install dependencies through the allowlist")(f)
    f = click.option("--test", "test_command", default=None, help="test command (allowlisted), e.g. 'npm test'")(f)
    f = click.option("--max-turns", type=click.IntRange(0, 50), default=None, help="repair turn budget (default 3)")(f)
    f = click.option("--repair-timeout", type=click.FloatRange(0.1), default=None, help="seconds per repair call")(f)
    f = click.option("--model-timeout", type=click.FloatRange(0.1), default=None, help="seconds for the first proposal call")(f)
    f = click.option("--test-timeout", type=click.FloatRange(0.1), default=None, help="seconds per test run")(f)
    f = click.option("--stall-timeout", type=click.FloatRange(0.1), default=None,
                     help="seconds without a byte from the model server before a call is cancelled (default 120)")(f)
    f = click.option("--install-timeout", type=click.FloatRange(0.1), default=None, help="seconds per install")(f)
    f = click.option("--deadline", "run_deadline_s", type=click.FloatRange(1), default=None, help="seconds for the whole run")(f)
    f = click.option("--off-target", type=click.Choice(["strict", "lenient", "off"]), default=None,
                     help="how the off-target-edit brake judges repairs")(f)
    f = click.option("--json", "as_json", is_flag=True, help="print a JSON summary on stdout")(f)
    f = click.option("--quiet", "-q", is_flag=True, help="no progress lines")(f)
    return f


@click.group()
@click.option("--workspace", "-w", default=None, help="the project directory (default: current directory)")
@click.option("--log-level", default="warning", show_default=True)
@click.pass_context
def cli(ctx: click.Context, workspace: str | None, log_level: str) -> None:
    """kodr: drive a coding model to a project that installs, runs and passes its own tests."""
    logs.configure(log_level)
    ctx.ensure_object(dict)
    ctx.obj["workspace"] = workspace


def _ws_option(f):
    return click.option("--workspace", "-w", "ws", default=None, help="the project directory (default: cwd)")(f)


@cli.command()
@click.option("-p", "--prompt", "prompt", default=None, help="the task")
@click.option("--prompt-file", type=click.Path(exists=True, dir_okay=False), default=None, help="read the task from a file")
@_ws_option
@_model_flags
@_loop_flags
@click.option("--dry-run", is_flag=True, help="ask for the proposal, print it as a diff, write nothing")
@click.option("--heal/--no-heal", default=None, help="repair failing tests in a bounded loop")
@click.option("--tools", is_flag=True, default=None, help="let the model read the project with read-only tools")
@click.option("--tool-steps", type=click.IntRange(1, 50), default=None, help="step budget of the tool loop (default 6)")
@click.option("--plan", "plan_ref", default=None, help="inject a plan: a plan RUN id, 'last', or a FILE")
@click.pass_context
def run(ctx, prompt, prompt_file, ws, as_json, quiet, dry_run, heal, tools, tool_steps, plan_ref, **flags):
    """Ask the model for a change, apply it, install, test (and heal)."""
    task = Path(prompt_file).read_text() if prompt_file else prompt
    if not task or not task.strip():
        raise UsageError("give the task with -p TEXT or --prompt-file FILE")
    if not (flags["base_url"] or flags["provider"]):
        raise UsageError("no model server: give --provider or --base-url (try `kodr demo` for a scripted run)")
    options = _options_from_flags(flags, dry_run=dry_run, heal=heal, tools=tools, tool_steps=tool_steps)
    app = _app(ctx, ws)
    if plan_ref:
        options = options.model_copy(update={"plan": _resolve_plan(app, plan_ref)})
    engine_run_id = app.engine(None).request(task, options)
    if not quiet:
        err.print(f"run {engine_run_id} in {app.workspace.root}")
    result = _drive(app, engine_run_id, options, quiet)
    if result.state is State.PROPOSED:
        records = app.store.load(result.run_id)
        proposal = fold(result.run_id, records).turns[0].proposal
        if proposal is not None and not as_json:
            click.echo(proposal_patch(result.base_snapshot, proposal, app.store.get_blob), nl=False)
    _finish(app, result, as_json)


def _resolve_plan(app: App, ref: str) -> str:
    """A plan from a file, or from a plan run in the store ('last' = the newest plan run)."""
    path = Path(ref)
    if path.is_file():
        return path.read_text()
    if ref == "last":
        ids = [r["run_id"] for r in app.store.runs() if r.get("mode") == "plan" and r.get("reason") == "plan_recorded"]
        if not ids:
            raise UsageError("no recorded plan in this store: run `kodr plan -p TASK` first")
        ref = ids[0]
    run_id = app.store.resolve(ref)
    plan = fold(run_id, app.store.load(run_id)).plan
    if not plan:
        raise UsageError(f"run {run_id} recorded no plan")
    return plan


@cli.command()
@click.option("-p", "--prompt", "prompt", required=True, help="the task to plan")
@_ws_option
@_model_flags
@click.option("--model-timeout", type=click.FloatRange(0.1), default=None, help="seconds for the plan call")
@click.option("--json", "as_json", is_flag=True)
@click.option("--quiet", "-q", is_flag=True)
@click.pass_context
def plan(ctx, prompt, ws, provider, base_url, model_name, model_timeout, as_json, quiet):
    """A plan-only turn: the model writes a scratchpad (an event and plan.md) for a later `run --plan`."""
    if not (base_url or provider):
        raise UsageError("no model server: give --provider or --base-url")
    options = run_options(provider=provider, base_url=base_url, model=model_name, model_timeout_s=model_timeout)
    app = _app(ctx, ws)
    run_id = app.engine(None).request(prompt, options, mode="plan")
    result = _drive(app, run_id, options, quiet)
    if result.plan and not as_json:
        click.echo(result.plan)
    _finish(app, result, as_json)


@cli.command()
@click.option("-p", "--prompt", "prompt", default=None, help="extra guidance for the repair")
@_ws_option
@_model_flags
@_loop_flags
@click.pass_context
def heal(ctx, prompt, ws, as_json, quiet, **flags):
    """Heal an existing project whose tests fail: the run starts at `applied` with no writes."""
    if not (flags["base_url"] or flags["provider"]):
        raise UsageError("no model server: give --provider or --base-url")
    options = _options_from_flags(flags, heal=True)
    app = _app(ctx, ws)
    run_id = app.engine(None).request(prompt or "Make the failing tests pass.", options, mode="heal")
    if not quiet:
        err.print(f"run {run_id} (heal) in {app.workspace.root}")
    _finish(app, _drive(app, run_id, options, quiet), as_json)


@cli.command()
@click.argument("run_ref", required=False)
@click.option("--all", "all_runs", is_flag=True, help="resume every unfinished run in the store")
@_ws_option
@_model_flags
@click.option("--max-turns", type=click.IntRange(0, 50), default=None)
@click.option("--repair-timeout", type=click.FloatRange(0.1), default=None)
@click.option("--test-timeout", type=click.FloatRange(0.1), default=None)
@click.option("--json", "as_json", is_flag=True)
@click.option("--quiet", "-q", is_flag=True)
@click.pass_context
def resume(ctx, run_ref, all_runs, ws, provider, base_url, model_name, max_turns, repair_timeout, test_timeout,
           as_json, quiet):
    """Continue unfinished runs from their last event, with their recorded settings (flags override)."""
    if bool(run_ref) == bool(all_runs):
        raise UsageError("give one RUN, or --all")
    app = _app(ctx, ws)
    overrides = {k: v for k, v in {
        "provider": provider, "base_url": base_url, "model": model_name, "max_turns": max_turns,
        "repair_timeout_s": repair_timeout, "test_timeout_s": test_timeout,
    }.items() if v is not None}
    if run_ref:
        ids = [app.store.resolve(run_ref)]
    else:
        ids = [r["run_id"] for r in app.store.runs() if r["state"] not in {s.value for s in EXIT_FOR_STATE}]
    results = []
    for run_id in ids:
        run = fold(run_id, app.store.load(run_id))
        options = RunOptions.of({**run.options, **overrides})
        if not quiet:
            err.print(f"resuming run {run_id} from seq {run.last_seq} ({run.state.value})")
        results.append(_drive(app, run_id, options, quiet, resume=True, overrides=overrides))
    if all_runs:
        rows = [_summary(app, r) for r in results]
        if as_json:
            click.echo(json.dumps(rows, indent=2, default=str))
        else:
            for r in rows:
                err.print(f"run {r['run_id']}: {r['state']} ({r['reason']})")
        sys.exit(max((EXIT_FOR_STATE.get(r.state, 1) for r in results), default=0))
    _finish(app, results[0], as_json)


@cli.command()
@_ws_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def runs(ctx, ws, as_json):
    """List the runs in the store, newest first."""
    app = _app(ctx, ws)
    rows = app.store.runs()
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    for r in rows:
        reason = f" ({r['reason']})" if r.get("reason") else ""
        click.echo(f"{r['run_id']}  {r['state']}{reason}  turn {r['heal_turn']}  seq {r['last_seq']}  "
                   f"{r.get('created_at') or ''}  {(r.get('task') or '')[:60]}")


@cli.command()
@click.argument("run_ref")
@_ws_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show(ctx, run_ref, ws, as_json):
    """One run: state, outcome, settings and where its artifacts are."""
    app = _app(ctx, ws)
    run_id = app.store.resolve(run_ref)
    run = fold(run_id, app.store.iter_events(run_id))  # streamed: bounded memory
    data = _summary(app, run) | {"task": run.task, "mode": run.mode, "workspace": run.workspace,
                                 "options": run.options, "created_at": run.created_at, "updated_at": run.updated_at}
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    for k in ("run_id", "state", "reason", "mode", "task", "workspace", "heal_turn", "last_seq",
              "created_at", "updated_at", "artifacts"):
        click.echo(f"{k:>11}: {data[k]}")


@cli.command()
@click.argument("run_ref")
@_ws_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def events(ctx, run_ref, ws, as_json):
    """The run's events, in order."""
    app = _app(ctx, ws)
    records, _ = _load(app, run_ref)
    if as_json:
        rows = [{"run_id": r.run_id, "seq": r.seq, "type": r.type, "schema_version": r.event.VERSION,
                 "recorded_at": r.recorded_at, "data": r.event.payload(), "prev_hash": r.prev_hash,
                 "hash": r.hash} for r in records]
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    for r in records:
        e = r.event
        detail = f"{e.from_state} → {e.to_state} via {e.trigger}" if isinstance(e, ev.StateChanged) else ""
        if isinstance(e, ev.StateChanged) and e.reason:
            detail += f" [{e.reason}]"
        click.echo(f"{r.seq:>4}  {r.recorded_at}  {r.type:<18} {detail}")


@cli.command()
@click.argument("run_ref")
@_ws_option
@click.pass_context
def artifacts(ctx, run_ref, ws):
    """Write a run's artifact files again from its events and blobs (they are views of the store)."""
    from adapters.artifacts import ArtifactWriter

    app = _app(ctx, ws)
    records, run = _load(app, run_ref)
    ArtifactWriter(app.workspace.root, app.store).refresh(run.run_id, records)
    click.echo(str(run_dir(app.workspace.root, run.run_id)))


@cli.command(name="explain")
@click.argument("run_ref")
@_ws_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def explain_cmd(ctx, run_ref, ws, as_json):
    """Why the run ended where it did: each turn, the stop rule and its evidence, the best turn."""
    app = _app(ctx, ws)
    x = explain(_load(app, run_ref)[1])
    click.echo(json.dumps(x, indent=2, default=str) if as_json else render_text(x))


@cli.command()
@click.argument("run_ref", required=False)
@_ws_option
@click.option("--file", "history_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="replay a history saved by `kodr events RUN --json` instead of one in the store")
@click.option("--materialize", "materialize_dir", type=click.Path(file_okay=False), default=None,
              help="rebuild the workspace files into DIR")
@click.option("--at", "at_seq", type=click.IntRange(1), default=None, help="with --materialize: as of this seq")
@click.option("--rerun", "rerun_dir", type=click.Path(file_okay=False), default=None,
              help="re-execute the run in DIR with the recorded model replies; report divergences")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def replay(ctx, run_ref, ws, history_file, materialize_dir, at_seq, rerun_dir, as_json):
    """Check a run's history against today's machine (no side effects) and print its timeline."""
    from adapters import replay as rp

    if bool(run_ref) == bool(history_file):
        raise UsageError("give one RUN, or --file FILE")
    app = None
    if history_file:
        run_id, records = rp.records_from_file(history_file)
        if materialize_dir or rerun_dir:
            raise UsageError("--materialize and --rerun need the run's blobs: replay a RUN from the store")
    else:
        app = _app(ctx, ws)
        run_id = app.store.resolve(run_ref)
        # only --materialize/--rerun need the history in memory; a check streams it
        records = app.store.load(run_id) if materialize_dir or rerun_dir else app.store.iter_events(run_id)
    report = rp.check(run_id, records)
    out: dict[str, Any] = {"run_id": run_id, "events": report.events, "ok": report.ok, "state": report.state,
                           "reason": report.reason, "illegal": report.illegal, "timeline": report.timeline}
    if materialize_dir and report.ok:
        manifest = rp.materialize(records, app.store.get_blob, Path(materialize_dir), at_seq)
        out["materialized"] = {"dir": str(Path(materialize_dir).resolve()), "at": at_seq, "files": len(manifest)}
    if rerun_dir and report.ok:
        old = fold(run_id, records)
        target = Path(rerun_dir).resolve()
        rp.materialize(records, app.store.get_blob, target, at_seq=1)
        new_app = open_app(target)
        options = RunOptions.of({**old.options, "provider": "replay"})
        model = rp.RecordedModel(rp.recorded_replies(records, app.store.get_blob))
        new_id = new_app.engine(None).request(old.task, options, mode=old.mode)
        new = new_app.drive(new_id, model, Progress(quiet=as_json))
        out["rerun"] = {"run_id": new_id, "dir": str(target), "state": new.state.value, "reason": new.reason,
                        "divergences": rp.divergences(old, new)}
    if as_json:
        click.echo(json.dumps(out, indent=2, default=str))
    else:
        for t in report.timeline:
            tail = f" [{t['reason']}]" if t["reason"] else ""
            click.echo(f"{t['seq']:>4}  {t['from']} → {t['to']} via {t['trigger']}{tail}")
        for bad in report.illegal:
            click.echo(f"ILLEGAL at seq {bad['seq']}: {bad['error']}")
        click.echo(f"{run_id}: {'ok' if report.ok else 'REJECTED'} ({report.events} events, ends {report.state})")
        if "materialized" in out:
            m = out["materialized"]
            click.echo(f"materialized {m['files']} files into {m['dir']}" + (f" as of seq {at_seq}" if at_seq else ""))
        if "rerun" in out:
            r = out["rerun"]
            click.echo(f"re-run {r['run_id']} in {r['dir']}: {r['state']} ({r['reason']})")
            for d in r["divergences"] or ["no divergence from the recording"]:
                click.echo(f"  {d}")
    diverged = bool(out.get("rerun", {}).get("divergences"))
    sys.exit(0 if report.ok and not diverged else 1)


@cli.group()
def db():
    """Database maintenance."""


@db.command()
@_ws_option
@click.pass_context
def upgrade(ctx, ws):
    """Migrate the database (KODR_DATABASE_URL, or the workspace's SQLite file) to the latest schema."""
    from store.database import database_url, upgrade as do_upgrade

    url = database_url(Path(ws or ctx.find_root().obj.get("workspace") or ".").resolve())
    do_upgrade(url)
    click.echo("database is at the latest schema")


@cli.group()
def audit():
    """Prove a history was not edited."""


@audit.command()
@click.argument("run_ref", required=False)
@_ws_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def verify(ctx, run_ref, ws, as_json):
    """Verify the hash chain of one run, or of every run; report the first broken link."""
    app = _app(ctx, ws)
    found = app.store.audit(run_ref)  # raises StoreCorrupt on an empty database
    reports = found.runs
    if as_json:
        click.echo(json.dumps({rid: r.__dict__ for rid, r in reports.items()}
                              | ({"blobs": found.blob_problems} if found.blob_problems else {}),
                              indent=2, default=str))
    else:
        for rid, r in reports.items():
            click.echo(f"{rid}: ok ({r.checked} events)" if r.ok else
                       f"{rid}: BROKEN at seq {r.first_broken_seq}: {r.problem}")
        for problem in found.blob_problems:
            click.echo(f"BROKEN {problem}")
    sys.exit(0 if found.ok else 1)


@cli.command()
@click.option("--keep", type=click.Path(file_okay=False), default=None, help="build the sample project here")
@click.option("--json", "as_json", is_flag=True)
def demo(keep, as_json):
    """A complete run with a built-in scripted model on a small sample project (no server needed)."""
    from adapters.demo import run_demo

    sys.exit(run_demo(keep, as_json, Progress(as_json), err))


cli.add_command(probe)


def main() -> None:
    try:
        cli(standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        err.print("interrupted: the run's history is intact; `kodr resume --all` continues it")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except KodrError as exc:
        err.print(f"kodr: {exc.message}", markup=False)
        sys.exit(exc.exit_code)
    except SystemExit:
        raise


if __name__ == "__main__":
    main()
