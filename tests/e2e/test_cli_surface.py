"""Issue 12, as a newcomer meets it: the installed `kodr` says what happened, touches nothing it
should not, refuses typos before recording anything, and matches its README."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

from adapters.cli import exits
from tests.e2e.cli_support import READS_EVENTS, kodr_script, tree
from tests.e2e.conftest import envelope
from tests.support.scripted_server import ScriptedServer

README = Path(__file__).parents[2] / "README.md"
PKG = json.dumps({"name": "w", "version": "1.0.0", "private": True, "scripts": {"test": "node --test"}})
PASSING = "const test = require('node:test');\ntest('ok', () => {});\n"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- item 3: typos leave no debris --------------------------------------------------------------


@pytest.mark.parametrize(
    "args, says",
    [
        (["--provider", "foo"], "'foo' is not one of"),
        (["--base-url", "localhost:1234"], "must be an http(s) URL"),
        (["--provider", "openai"], "needs an API key"),
        (["--base-url", "http://127.0.0.1:1/v1", "--test", "rm -rf /"], "Allowed:"),
        (["--base-url", "http://127.0.0.1:1/v1", "--max-turns", "-1"], "--max-turns"),
        (
            ["--base-url", "http://127.0.0.1:1/v1", "--dry-run", "--heal", "--test", "npm test"],
            "--dry-run writes nothing, so --heal, --test cannot apply",
        ),
        (["--base-url", "http://127.0.0.1:1/v1", "--tool-steps", "3"], "--tool-steps needs --tools"),
    ],
)
@pytest.mark.parametrize("tty", [False, True], ids=["pipe", "pty"])
def test_a_typo_is_refused_before_anything_is_recorded(workspace: Path, args: list[str], says: str, tty: bool) -> None:
    r = kodr_script("run", "-p", "x", *args, cwd=workspace, env={"OPENAI_API_KEY": "", "KODR_API_KEY": ""}, tty=tty)
    assert r.code == exits.USAGE, r
    assert says in " ".join(r.err.split()) and "Traceback" not in r.err
    assert r.out == ""
    assert tree(workspace) == set(), "no store, no run, no .kodr"


def test_resume_all_reports_each_run_it_cannot_resume_and_goes_on(workspace: Path) -> None:
    from adapters.bootstrap import open_app
    from kodr_core.options import RunOptions

    (workspace / "package.json").write_text(PKG)
    app = open_app(workspace)
    with ScriptedServer([envelope({"a.test.js": PASSING})]) as srv:
        bad = app.engine(None).request("left by an older kodr", RunOptions(provider="foo"))
        good = app.engine(None).request("a test", RunOptions(base_url=srv.base_url, test_command="node --test"))
        r = kodr_script("resume", "--all", cwd=workspace)
    assert f"run {bad}: not resumed: unknown provider 'foo'" in r.out, r
    assert f"run {good}: passed" in r.out, r
    assert r.code == exits.USAGE  # the worst of the runs: one could not be resumed


# -- item 4: read-only commands create nothing ----------------------------------------------------

READ_ONLY = [["runs"], ["runs", "--all"], *READS_EVENTS]


@pytest.mark.parametrize("tty", [False, True], ids=["pipe", "pty"])
@pytest.mark.parametrize("args", READ_ONLY, ids=" ".join)
def test_read_only_commands_create_nothing(tmp_path: Path, args: list[str], tty: bool) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    r = kodr_script(*args, cwd=empty, tty=tty)
    assert tree(tmp_path) == {"empty"}, r
    assert "Traceback" not in r.err
    if args == ["audit", "verify"]:  # an audit of a missing database fails: StoreCorrupt, "nothing to verify"
        assert r.code == exits.STORE and "nothing to verify" in r.err, r
    else:
        assert r.code in (0, exits.CHECK_FAILED, 6), r
    said = r.out + r.err
    assert "no runs yet" in said or "nothing to verify" in said, said


@pytest.mark.parametrize("args", READ_ONLY, ids=" ".join)
def test_read_only_commands_never_create_the_database_directory(tmp_path: Path, args: list[str]) -> None:
    url = f"sqlite:///{tmp_path}/nonexistent/dir/x.db"
    r = kodr_script(*args, cwd=tmp_path, env={"KODR_DATABASE_URL": url})
    assert not (tmp_path / "nonexistent").exists(), r
    assert tree(tmp_path) == set()


def test_probe_creates_nothing(tmp_path: Path) -> None:
    r = kodr_script("probe", "--base-url", f"http://127.0.0.1:{closed_port()}/v1", "--timeout", "2", cwd=tmp_path)
    assert r.code == exits.UNREACHABLE, r
    assert tree(tmp_path) == set()


def test_empty_results_say_so(workspace: Path) -> None:
    assert "no runs yet" in kodr_script("runs", cwd=workspace).out
    assert "no unfinished runs" in kodr_script("resume", "--all", cwd=workspace).out
    verify = kodr_script("audit", "verify", cwd=workspace)
    assert verify.code == exits.STORE and "nothing to verify" in verify.err, verify
    assert tree(workspace) == set()


# -- items 1, 2, 6: what a finished run says --------------------------------------------------------


def test_unreachable_server_names_the_url_and_the_next_command(workspace: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    r = kodr_script("run", "-p", "x", "--base-url", url, "--model", "m", "--model-timeout", "5", cwd=workspace)
    assert r.code == 10, r
    line = next(ln for ln in r.out.splitlines() if ln.startswith("run ") and ": failed" in ln)
    assert "(model_unavailable: " in line and f"127.0.0.1:{line.split('127.0.0.1:')[1][:5]}" in line, line
    assert str(url.split("//")[1].split("/")[0]) in line
    assert re.search(r"next: +\S*kodr probe --base-url " + re.escape(url), r.out), r.out


def test_an_install_that_cannot_start_says_why(tmp_path: Path) -> None:
    # npm, not uv: uv is kodr's own dependency (the `uv` package), found whatever PATH says
    ws, nobin = tmp_path / "ws", tmp_path / "nobin"
    ws.mkdir()
    nobin.mkdir()
    with ScriptedServer([envelope({"package.json": PKG, "a.test.js": PASSING})]) as srv:
        r = kodr_script(
            "run",
            "-p",
            "x",
            "--base-url",
            srv.base_url,
            "--install",
            "--test",
            "node --test",
            cwd=ws,
            env={"PATH": str(nobin)},
        )
    assert r.code == 10, r
    said = "`npm install --no-audit --no-fund --ignore-scripts` could not run: executable not found: 'npm'"
    assert f"install: {said}" in r.out, r.out
    line = next(ln for ln in r.out.splitlines() if ln.startswith("run ") and ": failed" in ln)
    assert f"(install_failed: {said}" in line, line
    assert re.search(r"next: +\S*kodr explain \w+$", r.out, re.MULTILINE), r.out


@pytest.mark.slow
def test_a_failed_install_shows_its_exit_code_and_first_stderr_line(workspace: Path) -> None:
    pkg = json.dumps(
        {
            "name": "w",
            "version": "1.0.0",
            "private": True,
            "scripts": {"test": "node --test"},
            "dependencies": {"is-number": "^999.0.0"},
        }
    )  # no such version on the registry: ETARGET
    with ScriptedServer([envelope({"package.json": pkg, "a.test.js": PASSING})]) as srv:
        r = kodr_script("run", "-p", "x", "--base-url", srv.base_url, "--install", "--test", "npm test", cwd=workspace)
    assert r.code == 10, r
    line = next(ln for ln in r.out.splitlines() if ln.startswith("run ") and ": failed" in ln)
    assert re.search(r"\(install_failed: `npm install [^`]*` exit \d+: npm error code ETARGET\)$", line), line
    assert re.search(r"next: +\S*kodr explain \w+$", r.out, re.MULTILINE), r.out


def test_demo_prints_its_result_on_stdout_with_the_audit(tmp_path: Path) -> None:
    ws = tmp_path / "demo"
    r = kodr_script("demo", "--keep", str(ws), cwd=tmp_path)
    assert r.code == 0, r
    assert r.err == "", "nothing on stderr unless logs are asked for"
    out = r.out
    assert "timeline: requested → proposing → applied → installing → verifying → healing → verifying → passed" in out
    assert re.search(r"^audit: +ok, \d+ events in an unbroken hash chain$", out, re.MULTILINE), out
    assert f"artifacts: {ws}/.kodr/runs/" in out
    # progress off a terminal: one plain line per step start and one per step end
    assert "    installing (attempt 1)…" in out and "    install: `npm install" in out
    assert "    running tests (attempt 1)…" in out and "    tests (full): 2 passed" in out
    hints = re.findall(r"^try: +(.+)$", out, re.MULTILINE)
    assert hints and all(" -w " in h for h in hints)
    run_id = re.search(r"^run (\w+): passed", out, re.MULTILINE).group(1)
    # each hint works as printed (here the script is not on PATH, so it names the script's path)
    for hint in hints:
        argv = hint.split()
        assert argv[0].endswith("kodr")
        shown = kodr_script(*argv[1:], cwd=tmp_path)
        assert shown.code == 0 and run_id in shown.out + shown.err, (hint, shown)


def test_progress_in_a_terminal_is_a_live_line_with_elapsed_time(tmp_path: Path) -> None:
    r = kodr_script("demo", "--keep", str(tmp_path / "demo"), cwd=tmp_path, tty=True)
    assert r.code == 0, r
    assert re.search(r"installing \(attempt 1\).*0:00:0\d", r.out), r.out[-2000:]
    assert "run " in r.out and ": passed" in r.out
    assert r.err == ""


def test_logs_go_to_stderr_only_when_asked_and_the_level_is_checked(tmp_path: Path) -> None:
    ws = tmp_path / "demo"
    quiet = kodr_script("demo", "--keep", str(ws), cwd=tmp_path)
    assert quiet.err == ""
    after = kodr_script("runs", "--log-level", "info", "-w", str(ws), cwd=tmp_path)
    before = kodr_script("--log-level", "info", "runs", "-w", str(ws), cwd=tmp_path)
    assert after.code == before.code == 0 and after.out == before.out
    bogus = kodr_script("runs", "--log-level", "bogus", cwd=tmp_path)
    assert bogus.code == exits.USAGE and "'bogus' is not one of" in bogus.err
    logged = kodr_script("demo", "--log-level", "info", "--keep", str(tmp_path / "d2"), cwd=tmp_path)
    assert logged.code == 0
    lines = [json.loads(ln) for ln in logged.err.splitlines() if ln.strip()]
    assert lines and all(ln["event"] == "event" and "run_id" in ln and "seq" in ln for ln in lines)
    assert '"event"' not in logged.out, "no log line among the progress lines of stdout"


def test_show_events_and_runs_say_what_was_asked(tmp_path: Path) -> None:
    ws = tmp_path / "demo"
    assert kodr_script("demo", "--keep", str(ws), cwd=tmp_path).code == 0
    assert kodr_script("demo", "--keep", str(ws), cwd=tmp_path).code == 0
    show = kodr_script("show", "last", "-w", str(ws), cwd=tmp_path)
    assert 'provider="scripted"' in show.out and 'test_command="npm test"' in show.out and "max_turns=2" in show.out
    events = kodr_script("events", "last", "-w", str(ws), cwd=tmp_path).out
    assert re.search(r"InstallFinished +turn=0 attempt=1 result\{command=npm (install|ci) .*exitCode=0", events), events
    assert re.search(r"TestsFinished .*failed=2", events), events
    runs = kodr_script("runs", "-w", str(ws), cwd=tmp_path).out.splitlines()
    assert len(runs) == 2 and all(str(ws) in ln for ln in runs), runs
    both = kodr_script("runs", "--limit", "1", "--all", "-w", str(ws), cwd=tmp_path)
    assert both.code == exits.USAGE and "not both" in both.err
    one = kodr_script("runs", "--limit", "1", "-w", str(ws), cwd=tmp_path).out.splitlines()
    assert len(one) == 2 and "--all" in one[1], one
    assert (
        len(
            kodr_script("runs", "--all", "--json", "-w", str(ws), cwd=tmp_path).out
            and json.loads(kodr_script("runs", "--all", "--json", "-w", str(ws), cwd=tmp_path).out)
        )
        == 2
    )


def test_replay_refuses_what_it_cannot_do_safely(tmp_path: Path) -> None:
    ws = tmp_path / "demo"
    assert kodr_script("demo", "--keep", str(ws), cwd=tmp_path).code == 0
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    r = kodr_script("replay", "last", "-w", str(ws), "--rerun", str(busy), cwd=tmp_path)
    assert r.code == exits.USAGE and "not empty" in r.err and "--force" in r.err
    assert [p.name for p in busy.iterdir()] == ["keep.txt"] and (busy / "keep.txt").read_text() == "mine"
    at_alone = kodr_script("replay", "last", "-w", str(ws), "--at", "3", cwd=tmp_path)
    assert at_alone.code == exits.USAGE and "--at needs --materialize" in at_alone.err
    out_of_range = kodr_script(
        "replay", "last", "-w", str(ws), "--materialize", str(tmp_path / "m"), "--at", "999", cwd=tmp_path
    )
    assert out_of_range.code == exits.USAGE and "has 25 events" in out_of_range.err
    assert not (tmp_path / "m").exists()
    forced = kodr_script(
        "replay", "last", "-w", str(ws), "--materialize", str(busy), "--at", "8", "--force", cwd=tmp_path
    )
    assert forced.code == 0, forced
    assert (busy / "slugify.js").is_file() and (busy / "keep.txt").read_text() == "mine"


# -- item 7: the README and the CLI cannot drift -----------------------------------------------------


def test_readme_exit_codes_are_generated_from_the_mapping() -> None:
    exits._check_consistent()
    text = README.read_text()
    block = text.split("<!-- exit-codes:start -->")[1].split("<!-- exit-codes:end -->")[0]
    assert block.strip() == exits.markdown_table()


def test_readme_states_no_default_provider_for_run(workspace: Path) -> None:
    text = README.read_text()
    assert "`--provider lmstudio`, the default" not in text
    r = kodr_script("run", "-p", "x", cwd=workspace)
    assert r.code == exits.USAGE and "no model server: give --provider or --base-url" in r.err
    assert "`kodr probe` defaults to LM Studio" in text
    probed = kodr_script("probe", "--json", "--timeout", "1", cwd=workspace)
    assert probed.code in (0, exits.UNREACHABLE), probed
    assert json.loads(probed.out)["provider"] == "lmstudio"
    assert json.loads(probed.out)["base_url"] == "http://localhost:1234/v1"


def test_readme_promises_what_the_demo_prints() -> None:
    """The promise checked by test_demo_prints_its_result_on_stdout_with_the_audit (timeline, audit, artifacts)."""
    text = " ".join(README.read_text().split())
    assert "prints the timeline, the audit and where the artifacts are (on stdout" in text


# -- issue 8 item 5, the CLI half: store problems exit 5 in one line, mapped at the edge ----------------


def test_a_corrupt_store_or_an_unsupported_url_exits_5_in_one_line(workspace: Path) -> None:
    (workspace / ".kodr").mkdir()
    junk = bytes(range(256)) * 20
    (workspace / ".kodr" / "kodr.db").write_bytes(junk)
    corrupt = kodr_script("runs", cwd=workspace)
    assert corrupt.code == 5 and "Traceback" not in corrupt.err, corrupt
    assert corrupt.err.startswith("kodr: ") and "not a database" in corrupt.err and len(corrupt.err.splitlines()) <= 2
    assert (workspace / ".kodr" / "kodr.db").read_bytes() == junk
    mysql = kodr_script("runs", cwd=workspace, env={"KODR_DATABASE_URL": "mysql://u@localhost/db"})
    assert mysql.code == 5 and "Traceback" not in mysql.err, mysql
