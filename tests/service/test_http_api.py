"""The HTTP API: hostile input gets a 4xx naming the field and loses nothing; the happy path
end to end through `kodr serve`, `kodr submit`, `kodr watch`, `kodr fetch` over real HTTP."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import tarfile
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from adapters import upload
from adapters.cli.service import workspace_archive
from adapters.http_api import create_app
from tests.e2e.conftest import kodr, kodr_env
from tests.service.support import FIXED, make_project, responder
from tests.support.scripted_server import ScriptedServer


def _tar(members: list[tuple[str, bytes | None, str | None]]) -> bytes:
    """(name, data, link target): data None with a target makes a symlink; '!hard' prefix a hard link."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data, link in members:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type = tarfile.LNKTYPE if link.startswith("!") else tarfile.SYMTYPE
                info.linkname = link.lstrip("!")
                tar.addfile(info)
            else:
                info.size = len(data or b"")
                tar.addfile(info, io.BytesIO(data or b""))
    return buf.getvalue()


@pytest.fixture
def client(store):
    with TestClient(create_app(store)) as c:
        yield c


def _post(client, request: dict | str, archive: bytes | None):
    files = {"workspace": ("ws.tar.gz", archive, "application/gzip")} if archive is not None else None
    body = request if isinstance(request, str) else json.dumps(request)
    return client.post("/api/runs", data={"request": body}, files=files)


GOOD = {"task": "fix add [fix]", "mode": "heal", "options": {"test_command": "node --test"}}


@pytest.mark.parametrize(
    "members, field, words",
    [
        ([("../evil.js", b"x", None)], "workspace", "escapes"),
        ([("/etc/passwd", b"x", None)], "workspace", "absolute"),
        ([("link", None, "/etc/passwd")], "workspace", "link"),
        ([("hard", None, "!/etc/passwd")], "workspace", "link"),
        ([(".git/config", b"x", None)], "workspace", ".git"),
    ],
)
def test_hostile_archives_are_refused_naming_the_member(client, store, members, field, words):
    r = _post(client, GOOD, _tar(members))
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field and words in r.json()["error"], r.json()
    assert store.runs() == []  # nothing recorded


def test_archive_caps_and_garbage(client, store, monkeypatch):
    monkeypatch.setattr(upload, "MAX_FILE_BYTES", 10)
    r = _post(client, GOOD, _tar([("big.js", b"x" * 11, None)]))
    assert (r.status_code, r.json()["field"]) == (400, "workspace") and "cap" in r.json()["error"]
    monkeypatch.setattr(upload, "MAX_TOTAL_BYTES", 15)
    r = _post(client, GOOD, _tar([("a.js", b"x" * 8, None), ("b.js", b"x" * 8, None)]))
    assert r.status_code == 400 and "unpacks" in r.json()["error"]
    r = _post(client, GOOD, b"PK\x03\x04 not a tarball")
    assert r.status_code == 400 and "gzip" in r.json()["error"]
    r = _post(client, GOOD, b"\x1f\x8b\x08\x00garbage")
    assert r.status_code == 400 and "unreadable" in r.json()["error"]
    assert store.runs() == []


@pytest.mark.parametrize(
    "request_part, field",
    [
        ("{not json", "request"),
        (json.dumps({"mode": "heal"}), "task"),
        (json.dumps({**GOOD, "mode": "deploy"}), "mode"),
        (json.dumps({**GOOD, "options": {"max_turns": 99}}), "options.max_turns"),
        (json.dumps({**GOOD, "options": {"api_key": "sk-1"}}), "options.api_key"),
        (json.dumps({**GOOD, "workspace_path": "/tmp"}), "workspace_path"),
    ],
)
def test_bad_request_parts_name_the_field(client, store, request_part, field):
    r = _post(client, request_part, _tar([("a.js", b"1", None)]))
    assert r.status_code in (400, 422), r.text
    assert r.json()["field"] == field, r.json()
    assert store.runs() == []


def test_json_requests_and_run_lifecycle_errors(store, tmp_path):
    client = TestClient(create_app(store, roots=[tmp_path / "shared"]))
    r = client.post("/api/runs", json={"task": "x", "workspace_path": "/"})
    assert (r.status_code, r.json()["field"]) == (422, "workspace_path") and "shares" in r.json()["error"]
    assert client.post("/api/runs", json={"task": "x"}).json()["field"] == "workspace_path"
    r = client.post("/api/runs", json={"task": "x", "workspace_path": "relative/dir"})
    assert (r.status_code, r.json()["field"]) == (422, "workspace_path")
    assert client.post("/api/runs", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
    proj = make_project(tmp_path / "shared" / "proj")
    r = client.post("/api/runs", json={**GOOD, "workspace_path": str(proj)})
    assert r.status_code == 201 and r.json()["state"] == "requested"
    run_id = r.json()["run_id"]
    assert client.get(f"/api/runs/{run_id}").json()["lease_owner"] is None
    assert client.get("/api/runs", params={"state": "requested"}).json()["runs"][0]["run_id"] == run_id
    assert client.get("/api/runs", params={"state": "nope"}).json()["field"] == "state"
    assert client.get("/api/runs/nosuchrun").status_code == 404
    assert client.post(f"/api/runs/{run_id}/resume").status_code == 202
    c = client.post(f"/api/runs/{run_id}/cancel")
    assert (c.status_code, c.json()["state"], c.json()["reason"]) == (200, "failed", "cancelled")
    assert client.post(f"/api/runs/{run_id}/cancel").status_code == 409
    assert client.post(f"/api/runs/{run_id}/resume").status_code == 409
    assert client.get(f"/api/runs/{run_id}/artifacts/nope.json").status_code == 404
    with tarfile.open(fileobj=io.BytesIO(client.get(f"/api/runs/{run_id}/workspace.tar.gz").content)) as tar:
        assert sorted(tar.getnames()) == ["calc.js", "calc.test.js", "package.json"]
    text = client.get("/metrics").text
    assert 'kodr_runs{state="failed"} 1' in text and "kodr_queue_depth 0" in text
    assert client.get("/healthz").json()["ok"] is True
    # the SSE stream replays the history and ends at the terminal event; Last-Event-ID skips what was seen
    body = client.get(f"/api/runs/{run_id}/stream").text
    assert [ln for ln in body.splitlines() if ln.startswith("id: ")] == ["id: 1", "id: 2"]
    body = client.get(f"/api/runs/{run_id}/stream", headers={"Last-Event-ID": "1"}).text
    assert [ln for ln in body.splitlines() if ln.startswith("id: ")] == ["id: 2"]


def test_a_token_guards_every_call_but_healthz(store):
    with TestClient(create_app(store, token="s3cret")) as c:
        assert c.get("/healthz").status_code == 200
        r = c.get("/api/runs")
        assert (r.status_code, r.json()["field"]) == (401, "Authorization")
        assert c.get("/api/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/runs", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_serve_beyond_loopback_refuses_without_a_token(tmp_path):
    r = kodr("serve", "--host", "0.0.0.0", "--port", "0", cwd=tmp_path, timeout=60)
    assert r.code == 2 and "KODR_SERVE_TOKEN" in r.err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_submit_watch_fetch_end_to_end(tmp_path):
    home, proj = tmp_path / "home", make_project(tmp_path / "proj")
    home.mkdir()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "adapters.cli",
            "serve",
            "--workspace",
            str(home),
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env=kodr_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(100):
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        with ScriptedServer(responder=responder()) as srv:
            r = kodr(
                "submit",
                "-p",
                "make add work [fix]",
                "--heal",
                "--test",
                "node --test",
                "--base-url",
                srv.base_url,
                "--server",
                url,
                cwd=proj,
            )
            assert r.code == 0, r.err
            run_id = r.out.strip()
            w = kodr("watch", run_id, "--server", url, cwd=proj, timeout=120)
        assert w.code == 0, w.out + w.err
        assert w.out.splitlines()[-1].endswith("verifying → passed via succeed [verification_passed]")
        f = kodr("fetch", run_id, str(tmp_path / "out"), "--server", url, cwd=proj)
        assert f.code == 0, f.err
        assert (tmp_path / "out" / "calc.js").read_text() == FIXED
        assert (proj / "calc.js").read_text() != FIXED  # the submitter's files are untouched
        events = httpx.get(f"{url}/api/runs/{run_id}/events").json()
        assert all(e["writer"] for e in events[1:]) and events[0]["writer"] is None
        text = httpx.get(url + "/metrics").text
        assert 'kodr_runs{state="passed"} 1' in text and 'kodr_step_seconds_count{step="tests"}' in text
    finally:
        server.terminate()
        server.wait(30)
    assert server.returncode in (0, -15), server.stderr.read().decode() if server.stderr else ""


def test_workspace_archive_leaves_out_kodr_and_deps(tmp_path):
    proj = make_project(tmp_path / "p")
    (proj / "node_modules" / "x").mkdir(parents=True)
    (proj / "node_modules" / "x" / "i.js").write_text("1")
    (proj / ".kodr").mkdir()
    (proj / ".kodr" / "kodr.db").write_text("db")
    with tarfile.open(fileobj=io.BytesIO(workspace_archive(proj))) as tar:
        assert sorted(tar.getnames()) == ["calc.js", "calc.test.js", "package.json"]


def test_secrets_in_a_request_never_reach_the_store(store, monkeypatch):
    secret = "sk-live-0123456789abcdef0123"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    with TestClient(create_app(store)) as c:
        archive = _tar(
            [
                ("calc.js", b"module.exports = 1;\n", None),
                ("config.js", f"const key = '{secret}';\n".encode(), None),
                (".env", f"OPENAI_API_KEY={secret}\n".encode(), None),
            ]
        )
        r = _post(c, {**GOOD, "task": f"use {secret} to call the API [fix]"}, archive)
        assert r.status_code == 201, r.text
        run_id = r.json()["run_id"]
        requested = c.get(f"/api/runs/{run_id}/events").json()[0]["data"]
    assert secret not in json.dumps(requested)
    assert "[secret:OPENAI_API_KEY]" in requested["task"]
    assert set(requested["base_snapshot"]) == {"calc.js"}  # the file holding the key and .env are left out
    with store.engine.connect() as conn:
        assert not any(secret.encode() in bytes(row[0]) for row in conn.exec_driver_sql("SELECT data FROM blobs"))
        assert not any(secret in row[0] for row in conn.exec_driver_sql("SELECT body FROM events"))
