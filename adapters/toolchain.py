"""Install and verify through the process runner, turning results into install.json/tests.json.

Test runs write JUnit XML to a private temporary file (pytest's ``--junitxml``, Node's
junit reporter via NODE_OPTIONS), so counts come from the runner's own report, with
the text parsers as the fallback. No report and no counts means no test ran.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

from adapters.processes import SubprocessRunner
from kodr_core.ports import ProcessResult
from kodr_core.test_command import TestCommand, plan_test_run
from kodr_core.results import InstallResult, TestResult, build_install_json, build_tests_json
from kodr_core.runners import report_from_outputs


class ProcessToolchain:
    def __init__(self, runner: SubprocessRunner | None = None) -> None:
        self.runner = runner or SubprocessRunner()

    def install(
        self, commands: Sequence[Sequence[str]], *, cwd: str, timeout_s: float, step_key: str
    ) -> tuple[InstallResult, bytes]:
        results: list[ProcessResult] = []
        remaining = timeout_s
        for argv in commands:
            res = self.runner.run(list(argv), cwd=cwd, timeout_s=max(remaining, 0.1), step_key=step_key)
            results.append(res)
            remaining -= res.duration_ms / 1000
            if res.exit_code != 0 or res.timed_out:
                break
        log = b"".join(r.log for r in results)
        return build_install_json(results, [list(c) for c in commands]), log

    def test(
        self,
        argv: Sequence[str],
        kind: str,
        *,
        cwd: str,
        timeout_s: float,
        step_key: str,
        only_files: Sequence[str] = (),
    ) -> tuple[TestResult, bytes]:
        tmp = tempfile.mkdtemp(prefix="kodr-junit-")
        try:
            junit = os.path.join(tmp, "junit.xml")
            script = None
            if kind == "npm":
                try:
                    script = json.loads(Path(cwd, "package.json").read_text()).get("scripts", {}).get("test")
                except (OSError, ValueError, AttributeError):
                    script = None
            run_argv, env = plan_test_run(
                TestCommand(list(argv), kind), junit, list(only_files) or None,
                script=script, inherited_node_options=os.environ.get("NODE_OPTIONS", ""),
            )
            res = self.runner.run(run_argv, cwd=cwd, timeout_s=timeout_s, env=env, step_key=step_key)
            xml = Path(junit).read_text(errors="replace") if Path(junit).is_file() else None
            report = report_from_outputs(kind, res.stdout, res.stderr, xml, root=cwd)
            return build_tests_json(res, report, list(argv)), res.log
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def kill_orphans(self, step_key: str) -> int:
        return self.runner.kill_orphans(step_key)
