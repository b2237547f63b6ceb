"""The hostile suite's harness: a real ``kodr run`` against a scripted model, then three checks.

Every case asserts what the user gets, and :func:`hostile_run` itself checks the other two
promises: a sibling directory next to the workspace is unchanged byte for byte (the
target every escape aims at), and none of the planted secret values is in any stored
byte (the SQLite file and everything under ``.kodr``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Result, envelope, events_of, kodr
from tests.support.scripted_server import ScriptedServer

#: Planted in kodr's environment for every hostile run; none may be stored.
SECRETS = {
    "KODR_API_KEY": "sk-hostile-kodr-key-5f1e0c",
    "DEPLOY_TOKEN": "tok-hostile-deploy-77aa19",
    "SERVICE_DB_PASSWORD": "pw-hostile-db-3c9d42",
    "STRIPE_SECRET": "sec-hostile-stripe-e81b",
}

SANDBOX_MODES = ["required", "off"]


def tree(root: Path) -> dict[str, str]:
    """path -> sha256 (or the link target / 'dir') of everything under ``root``."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath, name)
            rel = str(full.relative_to(root))
            if full.is_symlink():
                out[rel] = "link:" + os.readlink(full)
            elif full.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(full.read_bytes()).hexdigest()
    return out


@dataclass
class Outcome:
    result: Result
    json: dict[str, Any]
    ws: Path
    sibling: Path

    @property
    def state(self) -> str:
        return str(self.json.get("state"))

    @property
    def reason(self) -> str | None:
        return self.json.get("reason")

    def events(self) -> list[Any]:
        return events_of(self.ws, self.json["run_id"])

    def artifact(self, name: str) -> dict[str, Any]:
        return json.loads((self.ws / ".kodr" / "runs" / self.json["run_id"] / name).read_text())

    def stored_bytes(self) -> bytes:
        """Every byte kodr stored for this workspace: the files under .kodr/ as they lie on disk,
        then each blob and event body as the database returns it.

        The second part is not redundant: SQLite splits a large blob over overflow pages (and
        the WAL over frames), each with a header, so a string that straddles a page boundary is
        in the file but not in one piece: a scan of the file alone can miss a leaked secret,
        or a scrubbed marker, in a long test log.
        """
        chunks = []
        for p in sorted((self.ws / ".kodr").rglob("*")):
            if p.is_file():
                chunks.append(p.read_bytes())
        db = self.ws / ".kodr" / "kodr.db"
        if db.is_file():
            with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
                chunks += [bytes(row[0]) for row in conn.execute("SELECT data FROM blobs")]
                chunks += [row[0].encode() for row in conn.execute("SELECT body FROM events")]
        return b"\n".join(chunks)


@pytest.fixture
def sibling(tmp_path: Path) -> Path:
    """A directory beside the workspace with a few files: what an escape would touch."""
    s = tmp_path / "sibling"
    (s / "sub").mkdir(parents=True)
    (s / "keep.txt").write_text("do not touch\n")
    (s / "sub" / "data.bin").write_bytes(bytes(range(256)))
    return s


def hostile_run(
    ws: Path,
    sibling: Path,
    files: dict[str, str],
    *,
    test: str | None = None,
    install: bool = False,
    sandbox: str = "required",
    flags: tuple[str, ...] = (),
    pre: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    script: list[Any] | None = None,
    timeout: float = 300,
) -> Outcome:
    """``files`` are the model's reply; ``pre`` are files already in the workspace."""
    for path, text in (pre or {}).items():
        (ws / path).parent.mkdir(parents=True, exist_ok=True)
        (ws / path).write_text(text)
    before = tree(sibling)
    args = ["run", "-p", "do the task", "--json", "--sandbox", sandbox, *flags]
    if install:
        args.append("--install")
    if test:
        args += ["--test", test]
    with ScriptedServer(script or [envelope(files)]) as srv:
        r = kodr(*args, "--base-url", srv.base_url, cwd=ws, env={**SECRETS, **(env or {})}, timeout=timeout)
        prompts = json.dumps([r["body"] for r in srv.all_requests])  # the Authorization header is the key's one place
    out = json.loads(r.out) if r.out.strip().startswith("{") else {}
    outcome = Outcome(r, out, ws, sibling)
    assert tree(sibling) == before, "something was written outside the workspace"
    stored = outcome.stored_bytes() if (ws / ".kodr").is_dir() else b""
    for name, value in SECRETS.items():
        assert value.encode() not in stored, f"{name}'s value is in a stored byte"
        assert value not in prompts, f"{name}'s value was sent to the model"
    return outcome


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws
