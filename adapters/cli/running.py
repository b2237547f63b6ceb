"""Commands that drive runs: ``run``, ``plan``, ``heal``, ``resume``.

Each validates every flag and the provider configuration before it records
anything, then drives the run under its lease and ends with one line: the end
state, the one detail that explains it, and the next command to type.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

import click

from adapters.cli import exits
from adapters.cli.flags import (
    json_flag,
    loop_flags,
    model_flags,
    options_from_flags,
    quiet_flag,
    require_server,
    run_options,
    validated,
    workspace_flag,
)
from adapters.cli.root import cli

if TYPE_CHECKING:
    from adapters.bootstrap import App, Reading
    from kodr_core.aggregate import Run
    from kodr_core.options import RunOptions


def open_app(ctx: click.Context, ws: str | None) -> App:
    from adapters.bootstrap import open_app as _open

    return _open(ws or ctx.find_root().obj.get("workspace") or ".")


def summary(app: Reading, run: Run) -> dict[str, Any]:
    from adapters.artifacts import run_dir
    from adapters.cli.outcome import detail, next_command

    return {
        "run_id": run.run_id,
        "state": run.state.value,
        "outcome": run.outcome,
        "reason": run.reason,
        "detail": detail(run),
        "next": next_command(run, str(app.root)),
        "heal_turn": run.heal_turn,
        "last_seq": run.last_seq,
        "workspace": str(app.root),
        "artifacts": str(run_dir(str(app.root), run.run_id)),
        "facts": dict(run.transitions[-1].facts) if run.transitions else {},
    }


def report(app: App, run: Run, as_json: bool, stream: TextIO | None = None) -> None:
    """The run's result: a JSON summary on stdout, or its one line, the next command and the artifacts."""
    if as_json:
        click.echo(json.dumps(summary(app, run), indent=2, default=str))
        return
    from adapters.artifacts import run_dir
    from adapters.cli.outcome import next_command, one_line

    out = stream or sys.stdout
    click.echo(one_line(run), file=out)
    click.echo(f"  next:      {next_command(run, str(app.root))}", file=out)
    click.echo(f"  artifacts: {run_dir(str(app.root), run.run_id)}", file=out)


def finish(app: App, run: Run, as_json: bool, stream: TextIO | None = None) -> NoReturn:
    report(app, run, as_json, stream)
    sys.exit(exits.exit_code_for_state(run.state.value))


def progress_stream(as_json: bool, data_on_stdout: bool = False) -> TextIO:
    """Progress goes to stdout, unless stdout carries data (JSON, a patch)."""
    return sys.stderr if (as_json or data_on_stdout) else sys.stdout


def model_of(app: App, options: RunOptions) -> Any:
    """The model client for the run's settings (None when the run needs no model)."""
    if not (options.base_url or options.provider != "openai-compatible"):
        return None
    from adapters.bootstrap import model_for

    model = model_for(options)
    if options.tools:
        from adapters.tool_loop import ToolLoopModel

        model = ToolLoopModel(model, app.workspace, max_steps=options.tool_steps, local=model.config.local)  # type: ignore[attr-defined]
    return model


def drive(
    app: App,
    run_id: str,
    options: RunOptions,
    progress: Any,
    *,
    resume: bool = False,
    overrides: dict[str, Any] | None = None,
    model: Any = None,
) -> Run:
    from adapters.cli.root import driving

    driving(run_id)
    try:
        return app.drive(
            run_id,
            model if model is not None else model_of(app, options),
            progress,
            resume=resume,
            overrides=overrides,
            options=options,
        )
    finally:
        progress.close()


@cli.command()
@click.option("-p", "--prompt", "prompt", default=None, help="the task")
@click.option(
    "--prompt-file", type=click.Path(exists=True, dir_okay=False), default=None, help="read the task from a file"
)
@workspace_flag
@model_flags
@loop_flags
@click.option("--dry-run", is_flag=True, help="ask for the proposal, print it as a diff, write nothing")
@click.option("--heal/--no-heal", default=None, help="repair failing tests in a bounded loop")
@click.option("--tools", is_flag=True, default=None, help="let the model read the project with read-only tools")
@click.option("--tool-steps", type=click.IntRange(1, 50), default=None, help="step budget of the tool loop (default 6)")
@click.option("--plan", "plan_ref", default=None, help="inject a plan: a plan RUN id, 'last', or a FILE")
@click.pass_context
def run(
    ctx: click.Context,
    /,
    prompt: str | None,
    prompt_file: str | None,
    ws: str | None,
    as_json: bool,
    quiet: bool,
    dry_run: bool,
    heal: bool | None,
    tools: bool | None,
    tool_steps: int | None,
    plan_ref: str | None,
    **flags: Any,
) -> None:
    """Ask the model for a change, apply it, install, test (and heal)."""
    from adapters.cli.progress import Progress
    from kodr_core.errors import UsageError

    task = Path(prompt_file).read_text() if prompt_file else prompt
    if not task or not task.strip():
        raise UsageError("give the task with -p TEXT or --prompt-file FILE")
    require_server(flags["provider"], flags["base_url"])
    refuse_combinations(
        dry_run=dry_run,
        heal=heal,
        install=flags.get("install"),
        test=flags.get("test_command"),
        tools=tools,
        tool_steps=tool_steps,
    )
    options = validated(options_from_flags(flags, dry_run=dry_run, heal=heal, tools=tools, tool_steps=tool_steps))
    app = open_app(ctx, ws)
    if plan_ref:
        options = options.model_copy(update={"plan": _resolve_plan(app, plan_ref)})
    model = model_of(app, options)
    stream = progress_stream(as_json, dry_run)
    with app.workspace_held():
        run_id = app.engine(None, options=options).request(task, options)
        if not quiet:
            click.echo(f"run {run_id} in {app.root!s}", file=stream)
        result = drive(app, run_id, options, Progress(quiet, stream), model=model)
    if result.state.value == "proposed" and not as_json:
        from kodr_core.aggregate import fold
        from kodr_core.artifacts import proposal_patch

        proposal = fold(result.run_id, app.store.load(result.run_id)).turns[0].proposal
        if proposal is not None:
            click.echo(proposal_patch(result.base_snapshot, proposal, app.store.get_blob), nl=False)
    finish(app, result, as_json, stream)


def refuse_combinations(
    *,
    dry_run: bool,
    heal: bool | None,
    install: bool | None,
    test: str | None,
    tools: bool | None,
    tool_steps: int | None,
) -> None:
    """Flags that cannot mean anything together are refused, not silently ignored."""
    from kodr_core.errors import UsageError

    if dry_run:
        extra = [flag for flag, given in (("--heal", heal), ("--install", install), ("--test", test)) if given]
        if extra:
            raise UsageError(f"--dry-run writes nothing, so {', '.join(extra)} cannot apply: drop one or the other")
    if tool_steps is not None and not tools:
        raise UsageError("--tool-steps needs --tools")


def _resolve_plan(app: App, ref: str) -> str:
    """A plan from a file, or from a plan run in the store ('last' = the newest plan run)."""
    from kodr_core.aggregate import fold
    from kodr_core.errors import UsageError

    path = Path(ref)
    if path.is_file():
        return path.read_text()
    if ref == "last":
        ids = [r["run_id"] for r in app.store.runs() if r.get("mode") == "plan" and r.get("reason") == "plan_recorded"]
        if not ids:
            raise UsageError("no recorded plan in this store: run `kodr plan -p TASK` first")
        ref = ids[0]
    run_id = app.store.resolve(ref)
    plan_text = fold(run_id, app.store.load(run_id)).plan
    if not plan_text:
        raise UsageError(f"run {run_id} recorded no plan")
    return plan_text


@cli.command()
@click.option("-p", "--prompt", "prompt", required=True, help="the task to plan")
@workspace_flag
@model_flags
@click.option("--model-timeout", type=click.FloatRange(0.1), default=None, help="seconds for the plan call")
@json_flag
@quiet_flag
@click.pass_context
def plan(
    ctx: click.Context,
    prompt: str,
    ws: str | None,
    provider: str | None,
    base_url: str | None,
    model_name: str | None,
    model_timeout: float | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """A plan-only turn: the model writes a scratchpad (an event and plan.md) for a later `run --plan`."""
    from adapters.cli.progress import Progress

    require_server(provider, base_url)
    options = validated(
        run_options(provider=provider, base_url=base_url, model=model_name, model_timeout_s=model_timeout)
    )
    app = open_app(ctx, ws)
    model = model_of(app, options)
    stream = progress_stream(as_json)
    with app.workspace_held():
        run_id = app.engine(None, options=options).request(prompt, options, mode="plan")
        result = drive(app, run_id, options, Progress(quiet, stream), model=model)
    if result.plan and not as_json:
        click.echo(result.plan)
    finish(app, result, as_json, stream)


@cli.command()
@click.option("-p", "--prompt", "prompt", default=None, help="extra guidance for the repair")
@workspace_flag
@model_flags
@loop_flags
@click.pass_context
def heal(ctx: click.Context, /, prompt: str | None, ws: str | None, as_json: bool, quiet: bool, **flags: Any) -> None:
    """Heal an existing project whose tests fail: the run starts at `applied` with no writes."""
    from adapters.cli.progress import Progress

    require_server(flags["provider"], flags["base_url"])
    options = validated(options_from_flags(flags, heal=True))
    app = open_app(ctx, ws)
    model = model_of(app, options)
    stream = progress_stream(as_json)
    with app.workspace_held():
        run_id = app.engine(None, options=options).request(
            prompt or "Make the failing tests pass.", options, mode="heal"
        )
        if not quiet:
            click.echo(f"run {run_id} (heal) in {app.root!s}", file=stream)
        result = drive(app, run_id, options, Progress(quiet, stream), model=model)
    finish(app, result, as_json, stream)


@cli.command()
@click.argument("run_ref", required=False)
@click.option("--all", "all_runs", is_flag=True, help="resume every unfinished run of this workspace")
@workspace_flag
@model_flags
@click.option("--max-turns", type=click.IntRange(0, 50), default=None)
@click.option("--repair-timeout", type=click.FloatRange(0.1), default=None)
@click.option("--test-timeout", type=click.FloatRange(0.1), default=None)
@json_flag
@quiet_flag
@click.pass_context
def resume(
    ctx: click.Context,
    run_ref: str | None,
    all_runs: bool,
    ws: str | None,
    provider: str | None,
    base_url: str | None,
    model_name: str | None,
    max_turns: int | None,
    repair_timeout: float | None,
    test_timeout: float | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Continue unfinished runs from their last event, with their recorded settings (flags override).

    A run resumes in the workspace it was recorded in; `--workspace DIR` given to
    `resume RUN` moves it to DIR explicitly (recorded in RunResumed).
    """
    from kodr_core.errors import KodrError, UsageError

    if bool(run_ref) == bool(all_runs):
        raise UsageError("give one RUN, or --all")
    overrides = {
        k: v
        for k, v in {
            "provider": provider,
            "base_url": base_url,
            "model": model_name,
            "max_turns": max_turns,
            "repair_timeout_s": repair_timeout,
            "test_timeout_s": test_timeout,
        }.items()
        if v is not None
    }
    from adapters.bootstrap import open_reader

    if all_runs and open_reader(ws or ctx.find_root().obj.get("workspace") or ".") is None:
        click.echo("[]" if as_json else "no unfinished runs: there is no store in this workspace yet")
        sys.exit(0)
    app = open_app(ctx, ws)
    stream = progress_stream(as_json)
    if run_ref:
        run_id = app.store.resolve(run_ref)
        result = _resume_one(
            app, run_id, overrides, quiet, stream, rebind=bool(ws or ctx.find_root().obj.get("workspace"))
        )
        finish(app, result, as_json, stream)
    ids = [
        r["run_id"]
        for r in app.store.runs()
        if r["state"] not in exits.EXIT_FOR_STATE and _same_dir(r.get("workspace"), str(app.root))
    ]
    rows: list[dict[str, Any]] = []
    codes: list[int] = []
    for run_id in ids:
        try:
            result = _resume_one(app, run_id, overrides, quiet, stream, rebind=False)
        except KodrError as exc:  # report it and go on with the others
            code = exits.exit_code_for(exc)
            rows.append({"run_id": run_id, "state": None, "error": exc.message, "exit_code": code})
            click.echo(f"run {run_id}: not resumed: {exc.message}", file=stream if as_json else sys.stdout)
            codes.append(code)
            continue
        rows.append(summary(app, result))
        codes.append(exits.exit_code_for_state(result.state.value))
        if not as_json:
            report(app, result, False)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
    elif not ids:
        click.echo(f"no unfinished runs in {app.root!s}")
    sys.exit(max(codes, default=0))


def _same_dir(a: str | None, b: str) -> bool:
    import os

    return bool(a) and os.path.realpath(str(a)) == os.path.realpath(b)


def _resume_one(app: App, run_id: str, overrides: dict[str, Any], quiet: bool, stream: TextIO, *, rebind: bool) -> Run:
    from adapters.cli.progress import Progress
    from kodr_core.aggregate import fold
    from kodr_core.errors import UsageError
    from kodr_core.options import RunOptions

    records = app.store.load(run_id)
    run = fold(run_id, records)
    recorded = run.workspace  # where it was recorded, or last moved to by `resume --workspace`
    moved = bool(recorded) and not _same_dir(recorded, str(app.root))
    if moved and not rebind:
        raise UsageError(
            f"run {run_id} belongs to workspace {recorded}: resume it there, or give --workspace DIR to move it"
        )
    options = validated(RunOptions.of({**run.options, **overrides}))
    if not quiet:
        click.echo(f"resuming run {run_id} from seq {run.last_seq} ({run.state.value})", file=stream)
    extra = {**overrides, "workspace": str(app.root)} if moved else overrides
    with app.workspace_held():
        return drive(app, run_id, options, Progress(quiet, stream), resume=True, overrides=extra)
