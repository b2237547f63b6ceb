"""Directories that hold installed dependencies and tools' state: never the project's own code.

One list for every reader of paths (the import closure, the repair context's siblings,
stack-frame attribution), so a directory added here is skipped everywhere at once.
"""

from __future__ import annotations

from collections.abc import Iterable

DEPENDENCY_DIRS = frozenset(
    {
        "node_modules",
        ".venv",
        "venv",
        "site-packages",
        "dist-packages",
        "__pypackages__",
        ".git",
        ".kodr",
        "__pycache__",
        ".pytest_cache",
    }
)


def is_dependency_path(path: str | Iterable[str]) -> bool:
    """True when any part of ``path`` (a ``/``-separated string or its parts) is such a directory."""
    parts = path.split("/") if isinstance(path, str) else path
    return not DEPENDENCY_DIRS.isdisjoint(parts)
