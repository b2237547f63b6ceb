"""Flags shared by several commands, and the checks that run before a run is recorded.

To add a flag to ``run`` and ``heal``: add it to :func:`loop_flags` (and to
:data:`OPTION_OF_FLAG` when its RunOptions field has another name). Every flag
and the provider configuration are validated by :func:`validated` before
anything is written, so a typo leaves no run behind.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import click

from adapters.providers import PRESETS

if TYPE_CHECKING:
    from kodr_core.options import RunOptions

F = Callable[..., Any]

#: CLI flag names that differ from their RunOptions field.
OPTION_OF_FLAG = {
    "model_name": "model",
    "repair_timeout": "repair_timeout_s",
    "model_timeout": "model_timeout_s",
    "test_timeout": "test_timeout_s",
    "stall_timeout": "stall_timeout_s",
    "install_timeout": "install_timeout_s",
}


def workspace_flag(f: F) -> F:
    return click.option("--workspace", "-w", "ws", default=None, help="the project directory (default: cwd)")(f)


def json_flag(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="print the result as JSON on stdout")(f)


def quiet_flag(f: F) -> F:
    return click.option("--quiet", "-q", is_flag=True, help="no progress lines")(f)


def model_flags(f: F) -> F:
    f = click.option(
        "--provider",
        type=click.Choice(list(PRESETS)),
        default=None,
        help="model server preset (required unless --base-url is given)",
    )(f)
    f = click.option("--base-url", default=None, help="OpenAI-compatible base URL, e.g. http://localhost:1234/v1")(f)
    f = click.option(
        "--model",
        "model_name",
        default=None,
        help="model id on the server (default: KODR_MODEL, else the server's first)",
    )(f)
    return f


def loop_flags(f: F) -> F:
    f = click.option("--install/--no-install", default=None, help="install dependencies through the allowlist")(f)
    f = click.option("--test", "test_command", default=None, help="test command (allowlisted), e.g. 'npm test'")(f)
    f = click.option("--max-turns", type=click.IntRange(0, 50), default=None, help="repair turn budget (default 3)")(f)
    f = click.option("--repair-timeout", type=click.FloatRange(0.1), default=None, help="seconds per repair call")(f)
    f = click.option(
        "--model-timeout", type=click.FloatRange(0.1), default=None, help="seconds for the first proposal call"
    )(f)
    f = click.option("--test-timeout", type=click.FloatRange(0.1), default=None, help="seconds per test run")(f)
    f = click.option(
        "--stall-timeout",
        type=click.FloatRange(0.1),
        default=None,
        help="seconds without a byte from the model server before a call is cancelled (default 120)",
    )(f)
    f = click.option("--install-timeout", type=click.FloatRange(0.1), default=None, help="seconds per install")(f)
    f = click.option(
        "--deadline", "run_deadline_s", type=click.FloatRange(1), default=None, help="seconds for the whole run"
    )(f)
    f = click.option(
        "--off-target",
        type=click.Choice(["strict", "lenient", "off"]),
        default=None,
        help="how the off-target-edit brake judges repairs",
    )(f)
    f = click.option(
        "--keep-last",
        is_flag=True,
        default=None,
        help="a run that stops without passing keeps the last turn's files (default: the best turn's)",
    )(f)
    f = click.option(
        "--local/--remote",
        "local",
        default=None,
        help="treat the model server as local or remote (default: from the preset or host)",
    )(f)
    f = click.option(
        "--context-tokens",
        type=click.IntRange(256),
        default=None,
        help="the server's context window in tokens (default: asked from the server)",
    )(f)
    f = click.option(
        "--sandbox",
        type=click.Choice(["auto", "required", "off"]),
        default=None,
        help="bubblewrap around installs and tests (default auto: when it works here)",
    )(f)
    f = click.option("--test-network", is_flag=True, default=None, help="let tests reach the network")(f)
    f = click.option(
        "--allow-secret-files", is_flag=True, default=None, help="include .env*, *.pem, id_* … in snapshots and prompts"
    )(f)
    f = json_flag(f)
    f = quiet_flag(f)
    return f


def run_options(**kw: Any) -> RunOptions:
    from kodr_core.options import RunOptions

    return RunOptions(**{k: v for k, v in kw.items() if v is not None})


def options_from_flags(flags: Mapping[str, Any], **extra: Any) -> RunOptions:
    """RunOptions from the shared model and loop flags of ``run`` and ``heal``, with the server's locality."""
    from adapters.providers import record_locality

    return record_locality(run_options(**{OPTION_OF_FLAG.get(k, k): v for k, v in flags.items()}, **extra))


def require_server(provider: str | None, base_url: str | None) -> None:
    if not (provider or base_url):
        from kodr_core.errors import UsageError

        raise UsageError("no model server: give --provider or --base-url (try `kodr demo` for a scripted run)")


def validated(options: RunOptions, env: Mapping[str, str] | None = None) -> RunOptions:
    """Refuse what would fail later, before the run is recorded: the provider configuration
    (unknown preset, a URL without a scheme, a key the provider needs) and the test command."""
    from adapters.providers import resolve_provider
    from kodr_core.test_command import parse_test_command

    if options.provider != "scripted":
        provider = None if options.provider == "openai-compatible" and options.base_url else options.provider
        resolve_provider(provider, options.base_url, options.model, dict(env or os.environ))
    if options.test_command is not None:
        parse_test_command(options.test_command)
    return options
