"""The web page in headless Chromium (Debian's, driven by Playwright): submit a heal run through
the API, watch its page update live to `passed`, open a repair turn's diff, keep a screenshot."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import httpx
import pytest

from adapters.cli.service import workspace_archive
from tests.service.support import make_project, responder, start_serve
from tests.support.scripted_server import ScriptedServer

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/setup installs it)")
def test_run_page_follows_a_heal_run_live_to_passed(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    home = tmp_path / "home"
    home.mkdir()
    proj = make_project(tmp_path / "proj")
    server, url = start_serve(home)
    try:
        gate = threading.Event()
        answer = responder()

        def held_model(body: dict) -> object:  # the model answers only once the page is open
            gate.wait(120)
            return answer(body)

        with ScriptedServer(responder=held_model) as srv:
            request = {
                "task": "make add work [fix]",
                "mode": "heal",
                "options": {"base_url": srv.base_url, "test_command": "node --test"},
            }
            r = httpx.post(
                url + "/api/runs",
                data={"request": json.dumps(request)},
                files={"workspace": ("ws.tar.gz", workspace_archive(proj), "application/gzip")},
            )
            assert r.status_code == 201, r.text
            run_id = r.json()["run_id"]
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
                page = browser.new_page()
                page.goto(url + "/")
                expect(page.locator(f'tr[data-run="{run_id}"]')).to_be_visible()
                page.goto(f"{url}/runs/{run_id}")
                first = page.locator("#state").inner_text()
                assert first != "passed", "the run ended before the page opened: nothing was watched live"
                gate.set()
                expect(page.locator("#state")).to_have_text("passed", timeout=90_000)
                # after the terminal event the page redraws with the turns and the stop rule
                expect(page.locator("#stop")).to_contain_text("verification_passed", timeout=10_000)
                turn = page.locator("#turn-1")
                expect(turn).to_contain_text("turn 1 (repair)")
                expect(turn).to_contain_text("calc.js (modified)")
                expect(turn).to_contain_text("failing before: adds two numbers")
                turn.locator("details.diff summary").click()
                expect(turn.locator("details.diff pre")).to_contain_text("+  return a + b;")
                expect(turn.locator("details.diff pre")).to_contain_text("-  return a - b;")
                expect(page.locator(".machine span.current")).to_have_text("passed")
                shot = tmp_path / "run-page.png"
                page.screenshot(path=str(shot), full_page=True)
                browser.close()
        assert shot.stat().st_size > 10_000
    finally:
        server.terminate()
        server.wait(30)
    shutil.rmtree(home / ".kodr" / "work", ignore_errors=True)
