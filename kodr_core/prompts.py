"""What kodr says to the model: the proposal prompt, the repair prompt, the retry note.

Prompts are plain functions of recorded data, so a replay rebuilds the same request.
"""

from __future__ import annotations

from collections.abc import Callable

SYSTEM = """You are kodr's coding model. You change a software project by answering with ONE JSON object and nothing else:
{"summary": "<one line>", "files": [{"path": "<relative path>", "content": "<the whole new file>"}], "edits": [{"path": "<existing file>", "search": "<exact text from it>", "replace": "<its replacement>"}], "notes": null}
Rules: paths are relative to the project root, use forward slashes, never start with / and never contain "..";
never write into .git/ or .kodr/; in `files` give each changed file's COMPLETE new content; in `edits` change an
existing file by hunks whose `search` text occurs exactly once in it (a file shown truncated can only be changed
this way); use [] for an unused list; list only files that change.
The project must install with its own manifest (package.json or pyproject.toml/requirements.txt) and pass its own tests."""

#: Files larger than this are listed by name only in the first prompt.
FILE_PREVIEW_BYTES = 8_000
PROMPT_FILES_BUDGET = 40_000


def proposal_messages(
    task: str,
    files: list[str],
    read: Callable[[str], bytes | None],
    plan: str | None = None,
) -> list[dict[str, str]]:
    parts = [f"# Task\n{task.strip()}\n"]
    if plan:
        parts.append(f"# Plan (from an earlier planning turn)\n{plan.strip()}\n")
    if files:
        parts.append("# Project files\n" + "\n".join(f"- {f}" for f in files[:300]))
        used = 0
        for path in files:
            data = read(path)
            if data is None or len(data) > FILE_PREVIEW_BYTES or used + len(data) > PROMPT_FILES_BUDGET:
                continue
            used += len(data)
            parts.append(f"## {path}\n```\n{data.decode('utf-8', 'replace')}\n```")
    else:
        parts.append("# Project files\n(the workspace is empty)")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]


PLAN_SYSTEM = """You are kodr's planning model. Do not write code yet. Answer with a short Markdown plan:
the files to create or change (relative paths), what each will hold, and how the project's tests will show it works."""


def plan_messages(task: str, files: list[str], read: Callable[[str], bytes | None]) -> list[dict[str, str]]:
    """A plan-only turn: the same view of the project, a plan instead of an envelope."""
    msgs = proposal_messages(task, files, read)
    return [{"role": "system", "content": PLAN_SYSTEM}, msgs[1]]


def repair_messages(task: str, context_prompt: str) -> list[dict[str, str]]:
    user = (
        f"# Task\n{task.strip() or 'Make the failing tests pass.'}\n\n{context_prompt}\n\n"
        "Fix the cause of the failures. Change only what the failures need."
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def with_retry_note(messages: list[dict[str, str]], errors: tuple[str, ...]) -> list[dict[str, str]]:
    """Quote the last validation error back, so the retry knows what to fix."""
    if not errors:
        return messages
    note = (
        "Your previous answer was rejected: "
        f"{errors[-1]}\nAnswer again with ONLY the JSON object described in the instructions."
    )
    return messages + [{"role": "user", "content": note}]
