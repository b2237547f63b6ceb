"""Secrets stay out of the record: one scrubber for every byte kodr stores or sends.

A test can print what it finds (its own environment is clean, but a project file,
a log line or a model server's error may quote a key). So the *values* of kodr's
key variables and of every variable named like a secret (``*_KEY``, ``*_TOKEN``,
``*_SECRET``, ``*PASSWORD*``, and the password of ``KODR_DATABASE_URL``) are
replaced by ``[secret:NAME]`` at the boundaries: captured process output, every
blob and event written to the store, every prompt sent to a model.

Values shorter than :data:`MIN_SECRET_LEN` are not scrubbed: replacing ``1`` or
``true`` everywhere would destroy the record and protect nothing.

Secret-looking workspace *files* (``.env*``, ``*.pem``, ``*.key``, ``id_rsa``-style
keys, ``.netrc``, ``.pypirc``, an ``.npmrc`` with auth lines) are left out of
snapshots and prompts unless the run allows them (``--allow-secret-files``).
"""

from __future__ import annotations

import json
import re
from typing import Callable, Mapping
from urllib.parse import urlsplit

#: kodr's own key variables, scrubbed whatever their name says.
KEY_VARIABLES = ("KODR_API_KEY", "OPENAI_API_KEY", "OPENROUTER_API_KEY", "ANTHROPIC_API_KEY", "KODR_AUDIT_KEY")
SECRET_NAME = re.compile(r"(_KEY|_TOKEN|_SECRET)$|PASSWORD|^KODR_API_KEY$", re.I)
MIN_SECRET_LEN = 8
URL_VARIABLES = ("KODR_DATABASE_URL", "DATABASE_URL")


def secret_named(name: str) -> bool:
    return name.upper() in KEY_VARIABLES or bool(SECRET_NAME.search(name))


def secrets_in(env: Mapping[str, str]) -> dict[str, str]:
    """``{value: name}`` of every secret value in ``env`` worth scrubbing."""
    found: dict[str, str] = {}
    for name, value in env.items():
        if secret_named(name) and len(value.strip()) >= MIN_SECRET_LEN:
            found.setdefault(value.strip(), name)
    for name in URL_VARIABLES:
        try:
            password = urlsplit(env.get(name, "")).password
        except ValueError:
            password = None
        if password and len(password) >= MIN_SECRET_LEN:
            found.setdefault(password, name)
    return found


class Scrubber:
    """Replaces each secret value (raw and JSON-escaped) with ``[secret:NAME]``."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        forms: dict[str, str] = {}
        for value, name in secrets.items():
            forms.setdefault(value, name)
            forms.setdefault(json.dumps(value)[1:-1], name)
            forms.setdefault(json.dumps(value, ensure_ascii=False)[1:-1], name)
        self._names = forms
        ordered = sorted(forms, key=len, reverse=True)
        self._text = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        self._bytes = re.compile(b"|".join(re.escape(v.encode()) for v in ordered)) if ordered else None

    @classmethod
    def of_env(cls, env: Mapping[str, str]) -> "Scrubber":
        return cls(secrets_in(env))

    def __bool__(self) -> bool:
        return self._text is not None

    def text(self, s: str) -> str:
        if self._text is None or not s:
            return s
        return self._text.sub(lambda m: f"[secret:{self._names[m.group(0)]}]", s)

    def bytes(self, b: bytes) -> bytes:
        if self._bytes is None or not b:
            return b
        return self._bytes.sub(lambda m: f"[secret:{self._names[m.group(0).decode()]}]".encode(), b)


NO_SECRETS = Scrubber({})

_SECRET_FILE = re.compile(
    r"(^|/)(\.env(\..*)?|[^/]*\.(pem|key|p12|pfx)|id_(rsa|dsa|ecdsa|ed25519)[^/]*|\.netrc|\.pypirc|\.git-credentials)$"
)
_NPM_AUTH = re.compile(r"^\s*(//|[^=]*(_auth|_authToken|_password|username|email)\s*=)", re.M)


def looks_secret(path: str, read: Callable[[str], bytes | None] | None = None) -> bool:
    """A workspace file that probably holds credentials (``.npmrc`` only when it has auth lines)."""
    if _SECRET_FILE.search(path):
        return True
    if path.rsplit("/", 1)[-1] == ".npmrc" and read is not None:
        data = read(path)
        return data is not None and bool(_NPM_AUTH.search(data.decode("utf-8", "replace")))
    return False
