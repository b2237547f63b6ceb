"""One list of dependency and tool directories, read the same way by every path reader."""

from __future__ import annotations

import pytest

from kodr_core import repair_context
from kodr_core.dependency_dirs import DEPENDENCY_DIRS, is_dependency_path


@pytest.mark.parametrize("d", sorted(DEPENDENCY_DIRS))
def test_every_listed_directory_is_skipped_at_any_depth_by_every_reader(d: str) -> None:
    path = f"pkg/{d}/lib/index.js"
    assert is_dependency_path(path) and is_dependency_path(path.split("/"))
    assert repair_context._skipped(path)


def test_the_projects_own_paths_are_not_dependencies() -> None:
    for path in ("src/index.js", "lib/node_modules_helper.js", "dist/cjs.js", "tests/test_venv.py"):
        assert not is_dependency_path(path), path


def test_built_output_is_left_out_of_the_repair_context_but_followed_by_imports() -> None:
    assert repair_context._skipped("dist/cjs.js") and repair_context._skipped("build/app.js")
    assert not is_dependency_path("dist/cjs.js")  # a package's main may live there: the closure follows it
