"""``kodr probe``: what a run would send to a model server, sent in a run's order, and what came back.

Exit 0 when the server answers a chat completion, 7 when it cannot be reached,
8 when it answers but not in the OpenAI chat-completions protocol (an HTML
page, an error for every request). Loaded on first use through the main group's
command table (``adapters/cli/root.py``).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from adapters.cli import exits
from adapters.cli.exits import exit_code_for
from adapters.providers import PRESETS, locality, resolve_provider
from kodr_core.errors import UsageError


def _sent(e: dict[str, Any]) -> str:
    s = e.get("sent") or {}
    if not s:
        return ""
    parts = [
        f"response_format={s['response_format'] or 'none'}",
        f"tools={s['tools']}",
        "stream" + ("+stream_options" if s.get("stream_options") else "") if s.get("stream") else "no stream",
    ]
    return " ".join(parts)


def _human(r: dict[str, Any]) -> str:
    lines = [
        f"provider     {r['provider']} ({'local' if r['local'] else 'remote'}: {r['locality']}) at {r['base_url']}",
        f"reachable    {'yes' if r['reachable'] else 'no'}",
        f"protocol     {'openai chat-completions' if r['protocol'] else 'NOT spoken'}",
        f"model        {r.get('model') or '(none)'}",
        f"context      {r['context_tokens'] or 'unknown'} tokens",
    ]
    lines.append("requests (in a run's order):")
    for e in r["exchanges"]:
        status = e.get("status") or e.get("error") or "no answer"
        lines.append(f"  {e['method']:<4} {e['path']:<24} -> {status}  {_sent(e)}")
    for f in r["fallbacks"]:
        lines.append(f"fallback     {f['parameter']}: {f['from']} -> {f['to']}  ({f['message'][:120]})")
    caps = r.get("capabilities") or {}
    if caps:
        lines.append(
            f"a run sends  response_format={caps.get('response_format')}, "
            f"stream_options={'yes' if caps.get('stream_options') else 'no'}"
            + (f", tools {caps['tools']}" if "tools" in caps else "")
        )
    if r.get("envelope"):
        lines.append(f"envelope     {r['envelope']}")
    if r.get("error"):
        lines.append(f"error        {r['error']['kind']}: {r['error']['message'][:300]}")
    return "\n".join(lines)


@click.command("probe")
@click.option("--provider", default=None, type=click.Choice(list(PRESETS)), help="server preset (default: lmstudio)")
@click.option("--base-url", default=None, help="OpenAI-compatible base URL, e.g. http://localhost:1234/v1")
@click.option("--model", "model_name", default=None, help="model id to try (default: the server's first)")
@click.option("--tools", is_flag=True, help="probe as a `run --tools` would (the tool loop's first turns)")
@click.option("--local/--remote", "local", default=None, help="treat the server as local or remote")
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(0.1),
    default=60.0,
    show_default=True,
    help="seconds for the whole probe",
)
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
def probe(
    provider: str | None,
    base_url: str | None,
    model_name: str | None,
    tools: bool,
    local: bool | None,
    timeout_s: float,
    as_json: bool,
) -> None:
    """Send what a run would send, in a run's order; report the answers, the window and the fallbacks."""
    try:
        config = resolve_provider(provider, base_url, model_name, local=local)
    except UsageError as exc:
        click.echo(f"kodr: {exc.message}", err=True)
        sys.exit(exit_code_for(exc))
    from adapters.openai_client import OpenAIChatClient

    with OpenAIChatClient(config, stall_timeout_s=timeout_s, max_retries=1, backoff_base_s=0.5) as client:
        result = client.probe(timeout_s=timeout_s, tools=tools)
    result["locality"] = (
        ("--local" if local else "--remote")
        if local is not None
        else (locality(config.base_url)[1] if config.name == "openai-compatible" else f"the {config.name} preset")
    )
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
    else:
        click.echo(_human(result))
    if result["protocol"]:
        sys.exit(0)
    sys.exit(exits.NOT_THE_PROTOCOL if result["reachable"] else exits.UNREACHABLE)
