"""Where the model lives: provider presets and the resolved configuration.

Keys come from the environment only (never flags, never files), so they cannot
end up in shell history, events or artifacts. ``KODR_API_KEY`` works for every
provider and wins over the provider's own variable. ``local`` describes the kind
of server (local runtimes that break on ``tools`` + ``response_format``), not the
network: Ollama on another machine is still Ollama. For ``openai-compatible``
it is guessed from the host (:func:`locality`); ``--local``/``--remote`` override.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from kodr_core.errors import UsageError

if TYPE_CHECKING:  # pydantic is imported by the commands that build options, not by `kodr --help`
    from kodr_core.options import RunOptions

DEFAULT_PROVIDER = "lmstudio"
GENERIC = "openai-compatible"


@dataclass(frozen=True)
class Preset:
    name: str
    base_url: str | None
    local: bool
    key_env: str | None
    key_required: bool = False


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("lmstudio", "http://localhost:1234/v1", True, None),
        Preset("ollama", "http://localhost:11434/v1", True, None),
        Preset("llamacpp", "http://localhost:8080/v1", True, None),
        Preset("vllm", "http://localhost:8000/v1", True, None),
        Preset("openai", "https://api.openai.com/v1", False, "OPENAI_API_KEY", key_required=True),
        Preset("openrouter", "https://openrouter.ai/api/v1", False, "OPENROUTER_API_KEY", key_required=True),
        Preset(GENERIC, None, False, "KODR_API_KEY"),
    )
}


@dataclass(frozen=True)
class ProviderConfig:
    name: str
    base_url: str
    api_key: str | None = field(default=None, repr=False)
    model: str | None = None
    local: bool = True

    def __repr__(self) -> str:
        key = "'***'" if self.api_key else "None"
        return (
            f"ProviderConfig(name={self.name!r}, base_url={self.base_url!r}, api_key={key}, "
            f"model={self.model!r}, local={self.local!r})"
        )

    __str__ = __repr__

    def describe(self) -> dict[str, object]:
        """A loggable view: whether a key is set, never the key."""
        return {
            "provider": self.name,
            "base_url": self.base_url,
            "model": self.model,
            "local": self.local,
            "api_key": "set" if self.api_key else "unset",
        }


def locality(base_url: str) -> tuple[bool, str]:
    """(local?, why) from the host alone: loopback, private and link-local addresses,
    single-label names (``ollama`` in docker compose), ``.local``/``.lan``/``.internal``/
    ``.localhost`` and ``host.docker.internal`` are this machine's network."""
    host = (urlsplit(base_url).hostname or "").lower().rstrip(".")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        if ip.is_loopback or ip.is_private or ip.is_link_local:
            return True, f"private or loopback address {host}"
        return False, f"public address {host}"
    if host in ("localhost", "host.docker.internal"):
        return True, f"host {host}"
    if "." not in host:
        return True, f"single-label host name {host!r}"
    for suffix in (".local", ".lan", ".internal", ".localhost", ".home.arpa"):
        if host.endswith(suffix):
            return True, f"host name under {suffix}"
    return False, f"public host name {host!r}"


def _looks_local(base_url: str) -> bool:
    return locality(base_url)[0]


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--base-url must be an http(s) URL such as http://localhost:1234/v1, got {url!r}")
    if parts.username or parts.password:
        raise UsageError("--base-url must not carry credentials; put the key in KODR_API_KEY")
    return url.rstrip("/")


def resolve_provider(
    name: str | None,
    base_url: str | None = None,
    model: str | None = None,
    env: Mapping[str, str] | None = None,
    *,
    local: bool | None = None,
) -> ProviderConfig:
    """Preset + overrides + environment → ProviderConfig, or UsageError saying what is missing.

    ``model`` falls back to ``KODR_MODEL``; None means "the server's first model"
    (the client asks ``/models``). ``local`` overrides the preset's guess, which
    for ``openai-compatible`` comes from the host (loopback/private/.local).
    """
    env = os.environ if env is None else env
    if name is None:
        name = GENERIC if base_url else DEFAULT_PROVIDER
    preset = PRESETS.get(name)
    if preset is None:
        raise UsageError(f"unknown provider {name!r}; choose one of: {', '.join(PRESETS)}")
    url = base_url or preset.base_url
    if not url:
        raise UsageError(f"provider {name!r} needs --base-url (e.g. http://my-server:8000/v1)")
    url = _check_url(url)
    key = env.get("KODR_API_KEY") or (env.get(preset.key_env) if preset.key_env else None) or None
    if preset.key_required and not key:
        raise UsageError(f"provider {name!r} needs an API key: set {preset.key_env} or KODR_API_KEY")
    if local is None:
        local = _looks_local(url) if name == GENERIC else preset.local
    model = model or env.get("KODR_MODEL") or None
    return ProviderConfig(name=name, base_url=url, api_key=key, model=model, local=local)


def record_locality(options: RunOptions) -> RunOptions:
    """The options with the local/remote choice and its reason filled in, for the run's first event."""
    if options.local is not None:
        why = "--local" if options.local else "--remote"
        return options.model_copy(update={"locality": options.locality or why})
    preset = PRESETS.get(options.provider)
    if preset is None:
        return options
    if options.provider == GENERIC and options.base_url:
        local, why = locality(options.base_url)
    else:
        local, why = preset.local, f"the {preset.name} preset"
    return options.model_copy(update={"local": local, "locality": why})
