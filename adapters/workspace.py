"""The workspace on disk: the only place kodr writes files, and how it sees them.

Every path a model proposes passes :meth:`DiskWorkspace.check_path` before a byte
is written: relative, no ``..``, not into ``.git/`` or ``.kodr/``, and not through a
symlink that leads outside the root. Snapshots honour ``.gitignore`` (pathspec) and
never include kodr's own directory or installed dependencies, nor secret-looking
files (``.env*``, ``*.pem``, ``id_rsa``…, an ``.npmrc`` with auth lines) unless
``allow_secret_files``: what is not in a snapshot is never in a prompt either.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pathspec

from kodr_core.envelope import check_relative_path
from kodr_core.errors import RefusedInput
from kodr_core.secrets import looks_secret

#: Never part of a snapshot, whatever .gitignore says: VCS, kodr, installed deps, caches.
ALWAYS_IGNORED = (".git/", ".kodr/", "node_modules/", ".venv/", "__pycache__/", ".pytest_cache/")
_ALWAYS = pathspec.GitIgnoreSpec.from_lines(ALWAYS_IGNORED)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class DiskWorkspace:
    def __init__(self, root: str | os.PathLike[str], *, allow_secret_files: bool = False) -> None:
        self.root = str(Path(root).resolve())
        self.allow_secret_files = allow_secret_files

    # -- paths -------------------------------------------------------------
    def check_path(self, path: str) -> str:
        """Return the normalised relative path, or raise RefusedInput naming why."""
        rel = check_relative_path(path)
        target = Path(self.root, rel)
        real_parent = os.path.realpath(target.parent)
        if os.path.commonpath([real_parent, self.root]) != self.root:
            raise RefusedInput(f"refused path {path!r}: a symlink leads outside the workspace")
        for parent in Path(rel).parents:
            if parent != Path(".") and Path(self.root, parent).exists() and not Path(self.root, parent).is_dir():
                raise RefusedInput(f"refused path {path!r}: {parent.as_posix()} is a file, not a directory")
        if target.is_symlink():
            raise RefusedInput(f"refused path {path!r}: is a symlink; kodr does not write through links")
        if target.exists() and not target.is_file():
            raise RefusedInput(f"refused path {path!r}: exists and is not a regular file")
        return rel

    # -- files -------------------------------------------------------------
    def write(self, path: str, data: bytes) -> None:
        """Write whole-file contents atomically (temp file + rename): idempotent on replay."""
        rel = self.check_path(path)
        target = Path(self.root, rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".kodr-tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def read(self, path: str) -> bytes | None:
        target = Path(self.root, path)
        try:
            real = os.path.realpath(target)
            if os.path.commonpath([real, self.root]) != self.root or not target.is_file():
                return None
            return target.read_bytes()
        except (OSError, ValueError):
            return None

    def exists(self, path: str) -> bool:
        return Path(self.root, path).is_file()

    def _ignored(self) -> Callable[[str], bool]:
        """The user's .gitignore, with kodr's own exclusions matched apart so no `!rule` revives them."""
        gi = Path(self.root, ".gitignore")
        user = pathspec.GitIgnoreSpec.from_lines(gi.read_text(errors="replace").splitlines() if gi.is_file() else [])
        return lambda rel: _ALWAYS.match_file(rel) or user.match_file(rel)

    def files(self) -> list[str]:
        """Workspace-relative POSIX paths of the files kodr sees, sorted."""
        ignored = self._ignored()
        out: list[str] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel_dir = os.path.relpath(dirpath, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
            dirnames[:] = sorted(d for d in dirnames if not ignored(rel_dir + d + "/"))
            for name in filenames:
                rel = rel_dir + name
                full = os.path.join(dirpath, name)
                if os.path.islink(full) or ignored(rel):
                    continue
                if not self.allow_secret_files and looks_secret(rel, self.read):
                    continue
                out.append(rel)
        return sorted(out)

    def snapshot(self) -> dict[str, str]:
        return {rel: _sha256(Path(self.root, rel).read_bytes()) for rel in self.files()}
