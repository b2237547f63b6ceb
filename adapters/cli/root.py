"""The ``kodr`` group and the edge where errors become exit codes.

Start-up matters (``kodr --help`` and read-only commands should answer in well
under 0.2 s), so this module and the command modules import only click at the
top; each command imports what it needs when it runs. Commands defined in other
modules register lazily by name (:data:`LAZY`), so ``kodr --help`` does not
import them either.
"""

from __future__ import annotations

import importlib
import signal
import sys
from typing import Any

import click

from adapters.cli import exits
from kodr_core.errors import KodrError

LOG_LEVELS = ("debug", "info", "warning", "error")

#: Commands defined in other modules: name -> ("module:attribute", the one line `kodr --help` shows).
LAZY: dict[str, tuple[str, str]] = {
    "probe": ("adapters.cli.probe:probe", "Check a model server: reachable, models, tools, json_schema."),
    "serve": ("adapters.cli.service:serve", "Serve the HTTP API and the web pages, with embedded workers."),
    "worker": ("adapters.cli.service:worker", "Claim queued runs and expired leases, and drive them."),
    "submit": ("adapters.cli.service:submit", "Upload the workspace and a task to a kodr service."),
    "watch": ("adapters.cli.service:watch", "Follow a run on a kodr service live until it ends."),
    "fetch": ("adapters.cli.service:fetch", "Download a run's final files from a kodr service."),
}

#: Commands that may talk to a model server, whose client logs: logging is set up (silent) before they run.
#: (``replay`` drives an engine only with ``--rerun``, and sets logging up then: a check starts faster.)
LOGGING_COMMANDS = {"run", "plan", "heal", "resume", "probe", "demo", "serve", "worker", "submit"}

_asked: dict[str, str] = {}


def _level() -> str | None:
    return _asked.get("level")


def _set_log_level(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """``--log-level`` before or after the subcommand: logs go to stderr, and only when asked."""
    if value is not None:
        from adapters import logs

        _asked["level"] = value.lower()
        logs.configure(value.lower())
    return value


_LOG_LEVEL_ARGS: dict[str, Any] = {
    "type": click.Choice(LOG_LEVELS, case_sensitive=False),
    "default": None,
    "expose_value": False,
    "is_eager": True,
    "callback": _set_log_level,
    "help": "structured logs on stderr at this level (default: no logs)",
}


class KodrGroup(click.Group):
    """A group whose every command accepts ``--log-level``; the root one also lists :data:`LAZY`."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        if not any(p.name == "log_level" for p in cmd.params):
            cmd.params.append(click.Option(["--log-level"], **_LOG_LEVEL_ARGS))
        super().add_command(cmd, name)

    def _lazy(self) -> dict[str, tuple[str, str]]:
        return LAZY if self is cli else {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._lazy()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is None and cmd_name in self._lazy():
            module, attr = self._lazy()[cmd_name][0].split(":")
            cmd = getattr(importlib.import_module(module), attr)
            self.add_command(cmd, cmd_name)
        return cmd

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        name, cmd, rest = super().resolve_command(ctx, args)
        if name in LOGGING_COMMANDS:
            logs_silent_unless_asked()
        return name, cmd, rest

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """As click's, but lazy commands are listed from :data:`LAZY` without importing them."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max((len(n) for n in names), default=0)
        rows = []
        for name in names:
            cmd = click.Group.get_command(self, ctx, name)
            if cmd is None:
                rows.append((name, self._lazy()[name][1]))
            elif not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


KodrGroup.group_class = KodrGroup  # sub-groups (`db`, `audit`) are KodrGroups too


@click.group(cls=KodrGroup, name="kodr")
@click.option("--workspace", "-w", default=None, help="the project directory (default: current directory)")
@click.option("--log-level", **_LOG_LEVEL_ARGS)
@click.pass_context
def cli(ctx: click.Context, workspace: str | None) -> None:
    """kodr: drive a coding model to a project that installs, runs and passes its own tests."""
    ctx.ensure_object(dict)
    ctx.obj["workspace"] = workspace


def logs_silent_unless_asked() -> None:
    """Set logging up (structlog: imported now, not at start-up), silent unless ``--log-level`` asked."""
    if _level() is None:
        from adapters import logs

        logs.configure(None)


def driving(run_id: str) -> None:
    """Name the run being driven, for the message an interruption prints."""
    _asked["run_id"] = run_id


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so a run unwinds exactly as on Ctrl-C."""


def _on_sigterm(_signum: int, _frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: let the clean-up finish
    _asked["terminated"] = "yes"  # click turns the KeyboardInterrupt into Abort: remember which it was
    raise Terminated()


def _say(message: str) -> None:
    click.echo(f"kodr: {message}", err=True)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI: every error leaves as one line on stderr and a code from :mod:`adapters.cli.exits`."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        cli.main(args=argv, prog_name="kodr", standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        how, code = ("terminated", exits.TERMINATED) if _asked.get("terminated") else ("interrupted", exits.INTERRUPTED)
        run = _asked.get("run_id", "last")
        _say(f"{how}: child processes stopped, history intact; `kodr resume {run}` continues the run")
        sys.exit(code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exits.USAGE)
    except KodrError as exc:
        _say(exc.message)
        sys.exit(exits.exit_code_for(exc))
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - the edge: one line; the traceback only when asked
        first = str(exc).splitlines()[0] if str(exc) else ""
        code = exits.exit_code_for(exc)
        what = "the store failed" if code == exits.STORE else "unexpected error"
        _say(f"{what}: {type(exc).__name__}{': ' + first if first else ''}")
        if _level() == "debug":
            import traceback

            traceback.print_exc()
        elif code != exits.STORE:  # a store problem is said in its one line
            _say("run it again with --log-level debug for the traceback")
        sys.exit(code)


def console() -> None:
    """The ``kodr`` script: :func:`main`, then leave without tearing the interpreter down.

    After a run ~700 modules are loaded and clearing them at exit took ~0.2 s, more than
    a whole read-only command. Exit handlers still run and stdout/stderr are flushed
    first; a process with a live non-daemon thread exits the ordinary way.
    """
    import atexit
    import os
    import threading

    try:
        main()
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    if any(t is not threading.main_thread() and not t.daemon for t in threading.enumerate()):
        raise SystemExit(code)
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()  # logging.shutdown, tempfile finalizers: what an ordinary exit runs
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`kodr runs | head`): nothing more to say
            pass
    os._exit(code)
