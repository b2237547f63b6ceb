"""``kodr probe``: ask a model server what it accepts before a run finds out the hard way.

Reports whether the server is reachable, its models, whether it honours
``tools``, strict ``response_format`` (json_schema) and both together, and the
protocol kodr will therefore use. Exit 0 when reachable, 7 when not. Registered
on the main group by ``cli.add_command(probe)``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from adapters.providers import PRESETS, resolve_provider
from kodr_core.errors import UsageError
from adapters.cli.exits import exit_code_for

EXIT_UNREACHABLE = 7


def kodr_protocol(result: dict[str, Any], local: bool) -> str:
    """How kodr will talk to this server, from a probe result.

    Local servers never get ``tools`` and ``response_format`` together, whatever
    the probe says (the pair fails on some models and not others); remote ones
    get the pair only when the probe saw it work.
    """
    if not result.get("reachable") or result.get("protocol") == "unknown":
        return "unknown"
    if result.get("tools"):
        return "tools with response_format" if (result.get("both") and not local) else "tools without response_format"
    return "no tools, response_format only" if result.get("json_schema") else "no tools, envelope parsed from text"


def _yes(value: Any) -> str:
    return {True: "yes", False: "no", None: "?"}[value]


def _human(result: dict[str, Any]) -> str:
    where = "local" if result["local"] else "remote"
    models = result["models"]
    listed = ", ".join(models[:8]) + (f", ... ({len(models)} in all)" if len(models) > 8 else "")
    errors = result.get("errors") or {}
    lines = [
        f"provider     {result['provider']} ({where}) at {result['base_url']}",
        f"reachable    {_yes(result['reachable'])}" + (f"  ({errors['models']})" if "models" in errors else ""),
        f"models       {listed or '(none listed)'}",
        f"model        {result.get('model') or '(none)'}",
    ]
    for key in ("tools", "json_schema", "both"):
        label = "tools+schema" if key == "both" else key
        why = f"  ({errors[key]})" if key in errors else ""
        lines.append(f"{label:<12} {_yes(result.get(key))}{why}")
    lines.append(f"protocol     {result['protocol']}")
    if "protocol" in errors:
        lines.append(f"chat error   {errors['protocol']}")
    return "\n".join(lines)


@click.command("probe")
@click.option("--provider", default=None, type=click.Choice(list(PRESETS)), help="server preset (default: lmstudio)")
@click.option("--base-url", default=None, help="OpenAI-compatible base URL, e.g. http://localhost:1234/v1")
@click.option("--model", "model_name", default=None, help="model id to try (default: the server's first)")
@click.option("--timeout", "timeout_s", type=click.FloatRange(0.1), default=60.0, show_default=True,
              help="seconds per check")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
def probe(provider: str | None, base_url: str | None, model_name: str | None, timeout_s: float, as_json: bool) -> None:
    """Check a model server: reachable, models, tools, json_schema, both together, and kodr's protocol."""
    try:
        config = resolve_provider(provider, base_url, model_name)
    except UsageError as exc:
        click.echo(f"kodr: {exc.message}", err=True)
        sys.exit(exit_code_for(exc))
    from adapters.openai_client import OpenAIChatClient

    with OpenAIChatClient(config, stall_timeout_s=timeout_s, max_retries=0) as client:
        raw = client.probe(timeout_s=timeout_s)
    result = {**raw, "api": raw.get("protocol"), "local": config.local}
    result["protocol"] = kodr_protocol(raw, config.local)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(_human(result))
    sys.exit(0 if result["reachable"] else EXIT_UNREACHABLE)
