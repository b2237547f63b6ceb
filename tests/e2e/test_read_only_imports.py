"""Issue 8, item 4: a read-only command imports what it needs, when it needs it.

Importing SQLAlchemy alone costs about as much as the 0.2 s a read-only command has to answer
in (``bench/startup.py`` measures the time); this checks the cause instead, which does not
depend on how busy the machine is: the modules each command leaves in ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.cli_support import READS_EVENTS
from tests.e2e.conftest import kodr_env

#: Runs the CLI as the ``kodr`` script does, and writes the names of every imported module at exit.
WRAPPER = """
import atexit, json, sys
out = sys.argv[1]
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
sys.argv = ["kodr", *sys.argv[2:]]
from adapters.cli import main
main()
"""

NEVER_ON_THE_READ_PATH = ("sqlalchemy", "alembic", "structlog", "rich", "httpx")


def imported(tmp_path: Path, *args: str, cwd: Path, env: dict[str, str] | None = None) -> set[str]:
    out = tmp_path / "modules.json"
    p = subprocess.run(
        [sys.executable, "-c", WRAPPER, str(out), *args],
        cwd=cwd,
        env=kodr_env(env),
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert p.returncode == 0, (args, p.stdout, p.stderr)
    return {name.split(".")[0] for name in json.loads(out.read_text())}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("imports") / "demo"
    p = subprocess.run(
        [sys.executable, "-m", "adapters.cli", "demo", "--keep", str(ws), "--json"],
        env=kodr_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    return ws


def test_help_imports_click_and_kodrs_cli_only(tmp_path: Path) -> None:
    mods = imported(tmp_path, "--help", cwd=tmp_path)
    assert "click" in mods  # the wrapper works: it sees what was imported
    assert not mods & {*NEVER_ON_THE_READ_PATH, "pydantic", "sqlite3", "psycopg"}


def test_runs_imports_neither_sqlalchemy_nor_the_event_models(tmp_path: Path, demo: Path) -> None:
    with_store = imported(tmp_path, "runs", "-w", str(demo), cwd=tmp_path)
    assert "sqlite3" in with_store  # it did read the store
    assert not with_store & {*NEVER_ON_THE_READ_PATH, "pydantic"}
    without = imported(tmp_path, "runs", cwd=tmp_path)  # no store here
    assert not without & {*NEVER_ON_THE_READ_PATH, "pydantic", "sqlite3"}


@pytest.mark.parametrize("args", READS_EVENTS, ids=" ".join)
def test_read_only_commands_import_no_sqlalchemy_and_no_alembic(tmp_path: Path, demo: Path, args: list[str]) -> None:
    mods = imported(tmp_path, *args, "-w", str(demo), cwd=tmp_path)
    assert "sqlite3" in mods  # it did read the store
    assert not mods & set(NEVER_ON_THE_READ_PATH)


@pytest.mark.postgres
def test_runs_on_postgresql_imports_psycopg_and_not_sqlalchemy(tmp_path: Path, postgres_schema_url: str) -> None:
    from store.database import upgrade

    upgrade(postgres_schema_url)
    mods = imported(tmp_path, "runs", cwd=tmp_path, env={"KODR_DATABASE_URL": postgres_schema_url})
    assert "psycopg" in mods and not mods & set(NEVER_ON_THE_READ_PATH)
