"""The engine: one loop for run and resume.

Load the events, fold them, decide the next step from that state alone, perform
it through a port, append the outcome, repeat until a terminal state. A crash can
only land between two appends, and every such point is a place this loop starts
from. Each side effect is bracketed: ``…Started`` (attempt, key) before it and its
outcome after it; an interrupted attempt's orphaned processes are killed before
the step runs again.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from kodr_core import brakes
from kodr_core import events as ev
from kodr_core.aggregate import Run, apply, fold
from kodr_core.deadline import step_time
from kodr_core.decide import (
    ApplyWrites,
    CallModel,
    Fire,
    Install,
    RunTests,
    SkipInstall,
    Step,
    next_step,
    step_key,
)
from kodr_core.envelope import InvalidProposal, proposal_json_schema
from kodr_core.errors import KodrError
from kodr_core.failures import failing_paths
from kodr_core.install_plan import manifests_changed, plan_install, stale_locks
from kodr_core.machine import destination
from kodr_core.model_output import CUT_OFF, envelope_from_reply, strip_thinking
from kodr_core.options import RunOptions
from kodr_core.patch import proposal_writes
from kodr_core.ports import (
    ArtifactSink,
    ChatRequest,
    EventLog,
    ModelError,
    ModelPort,
    ProcessResult,
    Toolchain,
    Workspace,
)
from kodr_core.prompts import plan_messages, proposal_messages, repair_messages, with_retry_note
from kodr_core.repair_context import build_repair_context
from kodr_core.results import (
    InstalledFile,
    Scope,
    StepDeadline,
    build_install_json,
    build_tests_json,
)
from kodr_core.sources import DEFAULT_SOURCES, DependencySources, check_manifests
from kodr_core.states import TERMINAL, State
from kodr_core.test_command import TestCommand, detect_test_command, parse_test_command

#: Base snapshot caps: bigger files are recorded as skipped, not stored.
SNAPSHOT_FILE_CAP = 1 << 20
SNAPSHOT_TOTAL_CAP = 64 << 20

Observer = Callable[[ev.RecordedEvent], None]


#: Prompt sizing against a context window: a token is taken as 3 bytes (code and prose run
#: 3.5-4), at least a quarter of the window (and 512 tokens) stays free for the answer, and the
#: tool loop's schemas and hint take about 1500 tokens.
BYTES_PER_TOKEN = 3
ANSWER_TOKENS_MIN = 512
TOOL_TOKENS = 1500
PROMPT_BYTES_MIN = 2000


def _size(messages: list[dict[str, Any]]) -> int:
    return sum(len(str(m.get("content") or "").encode()) for m in messages)


def _nothing(_path: str) -> bytes | None:
    return None


def _budgeted(read: Callable[[str], bytes | None], allowance: int) -> Callable[[str], bytes | None]:
    """``read`` that shows files while ``allowance`` bytes last; later files are listed by name only."""
    left = [allowance]

    def reader(path: str) -> bytes | None:
        data = read(path)
        if data is None or len(data) > left[0]:
            return None
        left[0] -= len(data)
        return data

    return reader


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, indent=1).encode()


class Engine:
    def __init__(
        self,
        log: EventLog,
        workspace: Workspace,
        toolchain: Toolchain,
        model: ModelPort | None,
        *,
        artifacts: ArtifactSink | None = None,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.time,
        sources: DependencySources = DEFAULT_SOURCES,
    ) -> None:
        self.log = log
        self.workspace = workspace
        self.toolchain = toolchain
        self.model = model
        self.artifacts = artifacts
        self.observer = observer
        self.clock = clock
        self.sources = sources
        self._records: list[ev.RecordedEvent] = []

    # -- entry points -------------------------------------------------------
    def request(self, task: str, options: RunOptions, *, mode: str = "run", run_id: str | None = None) -> str:
        """Record a new run with the workspace's base snapshot (content-addressed blobs)."""
        run_id = run_id or new_run_id()
        kept: dict[str, bytes] = {}
        skipped: list[dict[str, Any]] = []
        total = 0
        for path in self.workspace.files():
            data = self.workspace.read(path)
            if data is None:
                continue
            if len(data) > SNAPSHOT_FILE_CAP or total + len(data) > SNAPSHOT_TOTAL_CAP:
                skipped.append({"path": path, "bytes": len(data), "why": "over the snapshot size cap"})
                continue
            total += len(data)
            kept[path] = data
        snapshot: dict[str, str] = {}
        for (path, data), sha in zip(
            kept.items(), self.log.put_blobs(list(kept.values())), strict=True
        ):  # one transaction
            if sha != hashlib.sha256(data).hexdigest():  # the store scrubbed a secret value out of it
                skipped.append({"path": path, "bytes": len(data), "why": "holds a secret value"})
                continue
            snapshot[path] = sha
        event = ev.RunRequested(
            task=task,
            workspace=self.workspace.root,
            mode=mode,
            options=options.model_dump(mode="json"),
            base_snapshot=snapshot,
            snapshot_skipped=skipped,
        )
        self._emit(self.log.append(run_id, 0, [event]))
        return run_id

    def resume(self, run_id: str, owner: str, overrides: dict[str, Any] | None = None) -> Run:
        """Take an unfinished run over: record it, make the workspace match the history, drive on."""
        self._records = self.log.load(run_id)
        run = fold(run_id, self._records)
        if run.state in TERMINAL:
            return run
        self.log.check_intact(run_id)  # never append after a cut or edited history
        interrupted = run.pending.key if run.pending else None
        run = self._append(run, [ev.RunResumed(owner=owner, overrides=overrides or {}, interrupted=interrupted)])
        restored = []
        for path, sha in sorted(run.manifest.items()):
            data = self.workspace.read(path)
            found = hashlib.sha256(data).hexdigest() if data is not None else None
            if found != sha:
                self.workspace.write(path, self.log.get_blob(sha))
                restored.append({"path": path, "sha256": sha, "found": found})
        if restored:
            run = self._append(run, [ev.WorkspaceRestored(files=restored)])
        return self.drive(run_id)

    def drive(self, run_id: str) -> Run:
        """Advance the run until it is terminal. The same call serves run and resume."""
        self._records = self.log.load(run_id)
        run = fold(run_id, self._records)
        try:
            while (step := next_step(run, self.clock())) is not None:
                run = self._perform(run, step)
            run = self._restore_best_turn(run)
        except BaseException:
            self._refresh_artifacts(run_id, best_effort=True)  # an interrupted run still shows how far it got
            raise
        self._refresh_artifacts(run_id)
        return run

    def _restore_best_turn(self, run: Run) -> Run:
        """A run that stopped without passing leaves the best turn's files, recorded as an event.

        ``--keep-last`` opts out. Only files repair turns after the best one wrote are
        put back (install-written lockfiles stay); a file those turns created is kept
        and listed, since kodr never deletes workspace files. Idempotent: a second
        drive of the same terminal run finds it already done.
        """
        if run.state not in TERMINAL or run.state is State.PASSED or run.heal_turn < 1:
            return run
        if RunOptions.of(run.options).keep_last or any(
            isinstance(r.event, ev.WorkspaceRestored)
            and any(str(f.get("why", "")).startswith("best turn") for f in r.event.files)
            for r in self._records
        ):
            return run
        history = brakes.history_from_run(run)
        best = brakes.best_turn(history)
        if best >= len(history) - 1 and history[-1].applied:
            return run  # the last turn is the best one
        target = history[best].manifest_after
        later = {p for t in history[best + 1 :] for p in t.written}
        restored: list[dict[str, Any]] = []
        for path in sorted(later):
            sha = target.get(path)
            data = self.workspace.read(path)
            found = hashlib.sha256(data).hexdigest() if data is not None else None
            if sha is None:
                restored.append(
                    {"path": path, "sha256": None, "found": found, "why": f"best turn {best}: created after it, kept"}
                )
            elif found != sha:
                self.workspace.write(path, self.log.get_blob(sha))
                restored.append({"path": path, "sha256": sha, "found": found, "why": f"best turn {best}"})
        if not restored:
            return run
        return self._append(run, [ev.WorkspaceRestored(files=restored)])

    # -- plumbing -------------------------------------------------------------
    def _emit(self, recs: Sequence[ev.RecordedEvent]) -> None:
        self._records.extend(recs)
        if self.observer:
            for r in recs:
                self.observer(r)

    def _append(self, run: Run, events: Sequence[ev.Event]) -> Run:
        recs = self.log.append(run.run_id, run.last_seq, events)
        self._emit(recs)
        for r in recs:
            run = apply(run, r)
        return run

    def _refresh_artifacts(self, run_id: str, *, best_effort: bool = False) -> None:
        """Render the artifacts once, when a drive ends: they are views of the whole history,
        so rendering them after every step made a run cost O(steps x history) in files."""
        if self.artifacts is None:
            return
        try:
            self.artifacts.refresh(run_id, self._records)
        except Exception:
            if not best_effort:
                raise

    def _perform(self, run: Run, step: Step) -> Run:
        match step:
            case Fire():
                return self._fire(run, step)
            case CallModel():
                return self._call_model(run, step)
            case ApplyWrites():
                return self._apply_writes(run, step)
            case Install():
                return self._install(run, step)
            case SkipInstall():
                return self._append(run, [ev.InstallSkipped(turn=step.turn, why=step.why)])
            case RunTests():
                return self._test(run, step)
        raise AssertionError(f"unknown step {step!r}")

    def _fire(self, run: Run, step: Fire) -> Run:
        to = destination(run.state, step.trigger)
        event = ev.StateChanged(
            from_state=run.state.value,
            to_state=to.value,
            trigger=step.trigger,
            heal_turn=run.heal_turn if step.heal_turn is None else step.heal_turn,
            facts=step.facts,
            outcome=to.value if to in TERMINAL else None,
            reason=step.reason.value if step.reason else None,
        )
        return self._append(run, [event])

    # -- the model --------------------------------------------------------------
    def _prompt_bytes(self, o: RunOptions, time_s: float = 10.0) -> int | None:
        """Bytes the prompt may take: the context window less room for the answer (None: no window known)."""
        window = o.context_tokens
        if window is None:
            ask = getattr(self.model, "context_tokens", None)
            window = ask(timeout_s=min(10.0, time_s)) if callable(ask) else None
        if not window:
            return None
        answer = max(ANSWER_TOKENS_MIN, window // 4)
        tools = TOOL_TOKENS if o.tools else 0
        return max(PROMPT_BYTES_MIN, (window - answer - tools) * BYTES_PER_TOKEN)

    def _messages(
        self, run: Run, step: CallModel, prompt_bytes: int | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """The step's messages; with ``prompt_bytes``, file contents and the repair context are cut to fit."""
        o = RunOptions.of(run.options)
        read: Callable[[str], bytes | None] = self.workspace.read
        if step.purpose != "repair" and prompt_bytes is not None:
            names = sorted(run.manifest)
            bare = (
                plan_messages(run.task, names, _nothing)
                if step.purpose == "plan"
                else proposal_messages(run.task, names, _nothing, plan=o.plan)
            )
            read = _budgeted(read, prompt_bytes - _size(bare))
        if step.purpose == "plan":
            return plan_messages(run.task, sorted(run.manifest), read), None
        if step.purpose != "repair":
            files = sorted(run.manifest)
            return proposal_messages(run.task, files, read, plan=o.plan), None
        prev = run.turns[step.turn - 1].final_tests
        log = b""
        if prev is not None and prev.log_blob:
            try:
                log = self.log.get_blob(prev.log_blob)
            except KeyError:
                log = b""
        raw = log.decode("utf-8", "replace") or (f"{prev.stdout_tail}\n{prev.stderr_tail}" if prev is not None else "")
        known = set(run.manifest)
        paths = failing_paths(prev, raw, self.workspace.root, known)
        budget = o.context_budget_bytes
        if prompt_bytes is not None:
            budget = max(PROMPT_BYTES_MIN // 2, min(budget, prompt_bytes - _size(repair_messages(run.task, ""))))
        ctx = build_repair_context(
            prev,
            paths,
            known,
            self.workspace.read,
            o.plan,
            budget_bytes=budget,
            workspace_root=self.workspace.root,
        )
        return repair_messages(run.task, ctx.to_prompt()), ctx.to_json()

    def _call_model(self, run: Run, step: CallModel) -> Run:
        o = RunOptions.of(run.options)
        given = step_time(run, self.clock(), o.repair_timeout_s if step.purpose == "repair" else o.model_timeout_s)
        asked = time.monotonic()
        prompt_bytes = self._prompt_bytes(o, min(10.0, given.timeout_s))  # the window ask is part of the call
        messages, context = self._messages(run, step, prompt_bytes)
        messages = with_retry_note(messages, step.errors)
        schema = None if step.purpose == "plan" else proposal_json_schema()
        request = ChatRequest(messages=messages, response_schema=schema)
        key = step_key(run, "model", step.turn)
        blobs = [_json_bytes({"messages": messages, "response_schema": request.response_schema})]
        if context is not None:
            blobs.append(_json_bytes(context))
        shas = self.log.put_blobs(blobs)  # one transaction for the request and its context
        request_blob, context_blob = shas[0], (shas[1] if context is not None else None)
        allowed = list(context.get("allowed_paths", [])) if context else []
        run = self._append(
            run,
            [
                ev.ModelCallStarted(
                    purpose=step.purpose,
                    turn=step.turn,
                    attempt=step.attempt,
                    key=key,
                    request_blob=request_blob,
                    context_blob=context_blob,
                    allowed_paths=allowed,
                )
            ],
        )
        if self.model is None:
            raise KodrError("no model is configured for this run (give --base-url or --provider)")
        spent = time.monotonic() - asked  # a slow window ask (a server that trickles /models) is the call's time
        timeout = given.timeout_s if spent < 1.0 else max(0.1, given.timeout_s - spent)
        started = time.monotonic()
        shrunk: list[dict[str, Any]] = []
        while True:
            try:
                left = timeout - (time.monotonic() - started) if shrunk else timeout
                reply = self.model.complete(request, deadline_s=left)
                break
            except ModelError as exc:
                if exc.kind == "context_overflow" and not shrunk:
                    # Shrink once: to what the error says fits, else to half; then ask again.
                    before = _size(messages)
                    window, prompt = getattr(exc, "window", None), getattr(exc, "prompt", None)
                    target = before // 2
                    if window and prompt and prompt > 0:
                        target = min(target, int(before * (window - max(ANSWER_TOKENS_MIN, window // 4)) / prompt))
                    target = max(PROMPT_BYTES_MIN // 2, target)
                    smaller, _ctx = self._messages(run, step, target)
                    smaller = with_retry_note(smaller, step.errors)
                    shrunk.append(
                        {
                            "context_overflow": exc.message[:300],
                            "prompt_bytes": before,
                            "shrunk_to_bytes": _size(smaller),
                            "duration_ms": exc.duration_ms,
                        }
                    )
                    if _size(smaller) < before:  # the same request again would fail the same way
                        messages, request = smaller, ChatRequest(messages=smaller, response_schema=schema)
                        continue
                message = exc.message
                if given.cut and exc.kind == "timeout":
                    message += (
                        f" (cut to {given.timeout_s:.1f}s by the run deadline; its own timeout is "
                        f"{given.own_timeout_s:g}s)"
                    )
                if shrunk and shrunk[0]["shrunk_to_bytes"] < shrunk[0]["prompt_bytes"]:
                    message += (
                        f" (after shrinking the prompt from {shrunk[0]['prompt_bytes']} to "
                        f"{shrunk[0]['shrunk_to_bytes']} bytes)"
                    )
                elif shrunk:
                    message += f" (the prompt, {shrunk[0]['prompt_bytes']} bytes, has nothing left to cut)"
                    shrunk[0]["duration_ms"] = 0  # the one call is exc's own
                return self._append(
                    run,
                    [
                        ev.ModelCallFailed(
                            purpose=step.purpose,
                            turn=step.turn,
                            attempt=step.attempt,
                            key=key,
                            error=exc.kind,
                            message=message,
                            duration_ms=(exc.duration_ms + sum(x["duration_ms"] for x in shrunk))
                            or int((time.monotonic() - started) * 1000),
                            retries=shrunk + exc.retries,
                            capabilities=exc.capabilities,
                        )
                    ],
                )
        if shrunk:
            reply = replace(reply, retries=shrunk + reply.retries, duration_ms=int((time.monotonic() - started) * 1000))
        response_blob = self.log.put_blob(
            _json_bytes(
                {
                    "request": reply.request_body,
                    "response": reply.raw,
                    "content": reply.content,
                    "reasoning": reply.reasoning,
                    "finish_reason": reply.finish_reason,
                }
            )
        )
        done = ev.ModelCallCompleted(
            purpose=step.purpose,
            turn=step.turn,
            attempt=step.attempt,
            key=key,
            response_blob=response_blob,
            duration_ms=reply.duration_ms,
            usage=reply.usage,
            finish_reason=reply.finish_reason,
            retries=reply.retries,
            capabilities=reply.capabilities,
        )
        if step.purpose == "plan":
            plan = strip_thinking(reply.content or "").strip()
            problem = (
                CUT_OFF
                if reply.finish_reason == "length"
                else None
                if plan
                else "the plan was empty; answer with a Markdown plan"
            )
            verdict_plan: ev.Event = (
                ev.PlanRecorded(plan=plan)
                if problem is None
                else ev.ProposalRejected(purpose="plan", turn=0, attempt=step.attempt, error=problem)
            )
            return self._append(run, [done, verdict_plan])
        try:
            proposal = envelope_from_reply(reply)
            writes = proposal_writes(proposal, self.workspace.read, context)  # edits -> whole files
        except InvalidProposal as exc:
            verdict: ev.Event = ev.ProposalRejected(
                purpose=step.purpose, turn=step.turn, attempt=step.attempt, error=str(exc)
            )
        else:
            files = []
            for path, content, facts in writes:
                data = content.encode()
                files.append({"path": path, "sha256": self.log.put_blob(data), "bytes": len(data), **facts})
            verdict = ev.ProposalAccepted(purpose=step.purpose, turn=step.turn, summary=proposal.summary, files=files)
        return self._append(run, [done, verdict])

    # -- the workspace ------------------------------------------------------------
    def _apply_writes(self, run: Run, step: ApplyWrites) -> Run:
        t = run.turns[step.turn]
        assert t.proposal is not None
        refused = []
        for f in t.proposal.files:
            try:
                self.workspace.check_path(f["path"])
            except KodrError as exc:
                refused.append(ev.WritesRefused(turn=step.turn, path=f["path"], why=exc.message))
        if refused:
            return self._append(run, refused)
        key = step_key(run, "writes", step.turn)
        run = self._append(
            run,
            [
                ev.WritesStarted(
                    turn=step.turn,
                    attempt=step.attempt,
                    key=key,
                    files=[{"path": f["path"], "sha256": f["sha256"]} for f in t.proposal.files],
                )
            ],
        )
        manifest = dict(run.manifest)
        written = []
        for f in t.proposal.files:
            path = self.workspace.check_path(f["path"])
            data = self.log.get_blob(f["sha256"])
            on_disk = self.workspace.read(path)
            change = (
                "created"
                if on_disk is None
                else ("unchanged" if hashlib.sha256(on_disk).hexdigest() == f["sha256"] else "modified")
            )
            if change != "unchanged":
                self.workspace.write(path, data)
            manifest[path] = f["sha256"]
            written.append({"path": path, "sha256": f["sha256"], "bytes": len(data), "change": change})
        return self._append(run, [ev.WritesApplied(turn=step.turn, key=key, files=written, manifest=manifest)])

    # -- processes ---------------------------------------------------------------
    def _reap_interrupted(self, run: Run, key: str) -> None:
        if run.pending is not None and run.pending.key == key:
            self.toolchain.kill_orphans(key)

    def _install(self, run: Run, step: Install) -> Run:
        o = RunOptions.of(run.options)
        key = step_key(run, "install", step.turn)
        self._reap_interrupted(run, key)
        commands = [list(c) for c in step.commands]
        problems = check_manifests(self.workspace.read, self.workspace.files(), self.sources)
        try:  # the full plan needs the manifests' texts (extras, groups, pytest plugins): decide has names only
            turn = run.turns[step.turn]
            before = turn.manifest_before
            stale = stale_locks(manifests_changed(before, run.manifest)) if step.turn and before is not None else set()
            commands = plan_install(set(run.manifest) - stale, self.workspace.read).commands
        except KodrError as exc:
            problems = [*problems, exc.message]
        if problems:  # a hostile manifest is refused before anything runs; the files stay for a repair
            refused = build_install_json([], commands).model_copy(
                update={"refused": problems, "error": "manifest refused: " + "; ".join(problems)}
            )
            return self._append(
                run, [ev.InstallFinished(turn=step.turn, attempt=step.attempt, key=key, result=refused.dump())]
            )
        run = self._append(
            run,
            [
                ev.InstallStarted(
                    turn=step.turn,
                    attempt=step.attempt,
                    key=key,
                    commands=commands,
                    confinement=self.toolchain.confinement("install"),
                )
            ],
        )
        before = self.workspace.snapshot()
        given = step_time(run, self.clock(), o.install_timeout_s)
        result, log = self.toolchain.install(commands, cwd=self.workspace.root, timeout_s=given.timeout_s, step_key=key)
        typed = result.model_copy(
            update={
                "log_blob": self.log.put_blob(log),
                "written": self._install_written(before),
                "deadline": StepDeadline.model_validate(given.facts()) if given.cut else None,
            }
        )
        return self._append(
            run, [ev.InstallFinished(turn=step.turn, attempt=step.attempt, key=key, result=typed.dump())]
        )

    def _install_written(self, before: dict[str, str]) -> list[InstalledFile]:
        """Files the install created or changed in the workspace (lockfiles, egg-info), as blobs,
        so replay and resume reproduce what the tests saw. node_modules/ and .venv/ are not
        workspace files; a file over the snapshot cap is listed without its content."""
        written: list[InstalledFile] = []
        for path, sha in sorted(self.workspace.snapshot().items()):
            if before.get(path) == sha:
                continue
            data = self.workspace.read(path)
            if data is None:
                continue
            change = "created" if path not in before else "modified"
            if len(data) > SNAPSHOT_FILE_CAP:
                written.append(
                    InstalledFile(path=path, bytes=len(data), change=change, why="over the snapshot size cap")
                )
                continue
            written.append(InstalledFile(path=path, sha256=self.log.put_blob(data), bytes=len(data), change=change))
        return written

    def _test_command(self, o: RunOptions) -> tuple[list[str], str] | None:
        cmd: TestCommand | None
        if o.test_command:
            cmd = parse_test_command(o.test_command)
        else:
            pkg = None
            raw = self.workspace.read("package.json")
            if raw is not None:
                try:
                    pkg = json.loads(raw)
                except ValueError:
                    pkg = None
            cmd = detect_test_command(set(self.workspace.files()), pkg if isinstance(pkg, dict) else None)
        return (list(cmd.argv), cmd.kind) if cmd is not None else None

    def _test(self, run: Run, step: RunTests) -> Run:
        o = RunOptions.of(run.options)
        key = step_key(run, "tests", step.turn, step.scope)
        self._reap_interrupted(run, key)
        found = self._test_command(o)
        argv = found[0] if found else []
        run = self._append(
            run,
            [
                ev.TestsStarted(
                    turn=step.turn,
                    attempt=step.attempt,
                    key=key,
                    command=argv,
                    scope=step.scope,
                    files=list(step.files),
                    confinement=self.toolchain.confinement("tests"),
                )
            ],
        )
        if found is None:
            nothing = ProcessResult(
                argv=[],
                cwd=self.workspace.root,
                exit_code=None,
                timed_out=False,
                duration_ms=0,
                started_at="",
                finished_at="",
                stdout="",
                stderr="",
                error="no test command: pass --test or add a test script / test files",
            )
            result, log = build_tests_json(nothing, None, []), b""
        else:
            given = step_time(run, self.clock(), o.test_timeout_s)
            result, log = self.toolchain.test(
                found[0],
                found[1],
                cwd=self.workspace.root,
                timeout_s=given.timeout_s,
                step_key=key,
                only_files=step.files,
            )
            if given.cut:
                result = result.model_copy(update={"deadline": StepDeadline.model_validate(given.facts())})
        typed = result.model_copy(update={"log_blob": self.log.put_blob(log), "scope": Scope(step.scope)})
        return self._append(
            run,
            [
                ev.TestsFinished(
                    turn=step.turn,
                    attempt=step.attempt,
                    key=key,
                    scope=step.scope,
                    result=typed.dump(),
                )
            ],
        )
