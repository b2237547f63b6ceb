"""A run's settings, recorded in ``RunRequested`` so resume and replay reuse them.

API keys are never part of this: they are read from the environment each time.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class RunOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    provider: str = "openai-compatible"
    base_url: str | None = None
    model: str | None = None
    test_command: str | None = None  # as typed by the user; checked against the allowlist
    install: bool = False
    dry_run: bool = False
    heal: bool = False
    max_turns: int = 3
    invalid_retries: int = 1  # bounded retry of an invalid envelope, quoting the error
    model_timeout_s: float = 300.0  # first proposal
    stall_timeout_s: float = 120.0  # no byte from the model server for this long cancels the call
    repair_timeout_s: float = 180.0  # each repair call
    install_timeout_s: float = 900.0
    test_timeout_s: float = 300.0
    run_deadline_s: float | None = 3600.0
    off_target: Literal["strict", "lenient", "off"] = "strict"
    context_budget_bytes: int = 48_000
    failing_first: bool = True  # run the failing test files first on heal turns
    plan: str | None = None  # a scratchpad injected into the prompt
    tools: bool = False  # read-only tool loop (list_files, read_file, inspect_symbols)
    tool_steps: int = 6
    keep_last: bool = False  # a run that stops without passing keeps the last turn's files, not the best turn's
    sandbox: Literal["auto", "required", "off"] = "auto"  # the OS sandbox around installs and tests
    test_network: bool = False  # tests reach the network (inside the sandbox they get loopback only)
    allow_secret_files: bool = False  # .env*, *.pem, id_*… in snapshots and prompts
    local: bool | None = None  # the server is treated as local (None: guessed from the preset/host)
    locality: str | None = None  # why it was judged local or remote, recorded with the run
    context_tokens: int | None = None  # the server's context window, when the user knows it

    @classmethod
    def of(cls, raw: dict[str, Any]) -> RunOptions:
        return cls.model_validate(raw)
