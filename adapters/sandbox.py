"""The OS sandbox around install and test processes: bubblewrap on Linux.

Why each part (the same shape as Codex CLI's bubblewrap pipeline: read-only root,
writable roots bound back, kodr's own metadata re-protected read-only):

* ``--ro-bind / /``: nothing outside the writable roots can be written, even by
  root, because the mount is read-only and ``--cap-drop ALL`` takes away the
  capabilities (``CAP_SYS_ADMIN``…) that would let root remount it.
* ``--tmpfs /tmp`` then ``--bind <workspace>``: a private /tmp (siblings of the
  workspace under /tmp vanish from view) and the workspace read-write; ``.kodr``
  (the run's store) and ``.git`` inside it are bound read-only again. kodr's own
  environment and the step's program are bound back read-only when they live
  under /tmp (:func:`tool_roots`).
* kodr's package caches (npm, uv) are bound read-write, so installs stay fast.
* ``--unshare-pid`` + ``--proc /proc``: a new PID namespace with a fresh /proc, so
  ``/proc/<parent>/environ`` is out of reach, and when the step's main process
  ends the kernel kills everything left in the namespace, however it detached
  (``setsid``, double fork, ``env -i``). ``--die-with-parent`` ties the namespace
  to the bwrap process kodr kills at a timeout.
* ``--unshare-net`` for tests (loopback only) unless the run allows the network;
  installs keep it: they need the registry.
* ``--unshare-ipc``, ``--unshare-uts``, ``--new-session`` (no TIOCSTI into kodr's
  terminal), ``--dev /dev`` (a minimal /dev).
* The environment is built from an allowlist by the process runner
  (:func:`sandbox_env`), never inherited.

``auto`` mode probes once per process whether bwrap can build this sandbox here
(no bwrap, or user namespaces disabled for non-root); when it cannot, processes
run with kodr's older confinement (own process group, filtered environment) and
the step's events say so.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from adapters.processes import is_secret_name
from kodr_core.errors import UsageError

SandboxMode = Literal["auto", "required", "off"]

#: Variables a sandboxed process may inherit from kodr's environment (plus any
#: ``npm_config_*`` / ``UV_*`` that is not secret-named). Everything else is dropped.
ENV_ALLOWED = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "LC_ALL",
        "LC_CTYPE",
        "TERM",
        "TZ",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "NODE_EXTRA_CA_CERTS",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
    }
)
ENV_ALLOWED_PREFIXES = ("npm_config_", "UV_", "LC_")


def sandbox_env(base: Mapping[str, str]) -> dict[str, str]:
    """The allowlisted part of ``base``; secret-named variables never pass."""
    return {
        k: v
        for k, v in base.items()
        if (k in ENV_ALLOWED or k.startswith(ENV_ALLOWED_PREFIXES)) and not is_secret_name(k)
    }


def package_caches(env: Mapping[str, str]) -> dict[str, str]:
    """kodr's package caches (created if missing): bound read-write and named to the tools."""
    home = env.get("HOME") or str(Path.home())
    xdg = env.get("XDG_CACHE_HOME") or os.path.join(home, ".cache")
    caches = {
        "npm_config_cache": env.get("npm_config_cache") or env.get("NPM_CONFIG_CACHE") or os.path.join(home, ".npm"),
        "UV_CACHE_DIR": env.get("UV_CACHE_DIR") or os.path.join(xdg, "uv"),
    }
    for path in caches.values():
        os.makedirs(path, exist_ok=True)
    return {k: os.path.realpath(v) for k, v in caches.items()}


@dataclass(frozen=True)
class Confinement:
    """How one step's processes are confined: recorded in InstallStarted/TestsStarted."""

    sandbox: Literal["bwrap", "none"]
    mode: SandboxMode
    network: bool
    why: str

    def facts(self) -> dict[str, object]:
        return {"sandbox": self.sandbox, "mode": self.mode, "network": self.network, "why": self.why}


class SandboxUnavailable(UsageError):
    """``--sandbox required`` where bubblewrap cannot run: refused before anything is recorded."""


_probe_cache: dict[str, str | None] = {}
_warned: set[str] = set()


def probe(bwrap: str | None) -> str | None:
    """None when bwrap can build kodr's sandbox here, else why not (cached per binary)."""
    if bwrap is None:
        return "bwrap (bubblewrap) is not installed"
    if bwrap not in _probe_cache:
        argv = [
            bwrap,
            *_namespace_flags(network=False),
            "--ro-bind",
            "/",
            "/",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--tmpfs",
            "/tmp",
            "--",
            "/bin/true",
        ]
        try:
            p = subprocess.run(argv, capture_output=True, timeout=20, stdin=subprocess.DEVNULL, check=False)
            why = (
                None
                if p.returncode == 0
                else (f"bwrap failed here (exit {p.returncode}): {p.stderr.decode(errors='replace').strip()[:300]}")
            )
        except (OSError, subprocess.SubprocessError) as e:
            why = f"bwrap could not run: {e}"
        _probe_cache[bwrap] = why
    return _probe_cache[bwrap]


def _hidden_by_private_mounts(path: str) -> bool:
    return any(path == m or path.startswith(m + "/") for m in ("/tmp", "/dev/shm"))


def tool_roots(argv0: str) -> list[str]:
    """kodr's own environment and the step's program, when they live under /tmp.

    The private /tmp would hide them (a venv in a CI checkout under /tmp, kodr's own
    ``uv``), so they are bound back read-only: the step can run them, not change them.
    A program in a ``bin/`` folder brings its prefix (a venv needs its ``pyvenv.cfg``).
    """
    roots = {sys.prefix, os.path.realpath(sys.prefix)}
    if os.path.isabs(argv0):
        for program in (argv0, os.path.realpath(argv0)):
            folder = os.path.dirname(program)
            roots.add(os.path.dirname(folder) if os.path.basename(folder) == "bin" else folder)
    return sorted(r for r in roots if _hidden_by_private_mounts(r) and os.path.isdir(r))


def _namespace_flags(*, network: bool) -> list[str]:
    flags = [
        "--die-with-parent",
        "--new-session",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--cap-drop",
        "ALL",
    ]
    return flags if network else [*flags, "--unshare-net"]


class Sandbox:
    """Decides each step's confinement and wraps its argv in bwrap when that is the one."""

    def __init__(self, mode: SandboxMode = "auto", *, bwrap: str | None = None) -> None:
        self.mode = mode
        self.bwrap = bwrap or shutil.which("bwrap")

    def confinement(self, *, network: bool) -> Confinement:
        """Raises SandboxUnavailable when the mode is ``required`` and bwrap cannot run."""
        if self.mode == "off":
            return Confinement("none", "off", True, "--sandbox off: process group and filtered environment only")
        why = probe(self.bwrap)
        if why is None:
            return Confinement(
                "bwrap",
                self.mode,
                network,
                "bubblewrap: read-only root, workspace read-write, private /tmp, new PID/IPC"
                + ("" if network else "/network")
                + " namespaces",
            )
        if self.mode == "required":
            raise SandboxUnavailable(f"--sandbox required, but {why}")
        if why not in _warned:
            _warned.add(why)
            logging.getLogger("kodr.sandbox").warning(
                "no OS sandbox: %s; installs and tests run unconfined (process group, filtered environment)", why
            )
        return Confinement("none", "auto", True, f"no OS sandbox ({why}); process group and filtered environment only")

    def wrap(
        self,
        argv: Sequence[str],
        *,
        cwd: str,
        network: bool,
        writable: Sequence[str] = (),
        protected: Sequence[str] = (".kodr", ".git"),
    ) -> list[str]:
        """``argv`` run by bwrap: ``cwd`` and ``writable`` read-write, the rest read-only."""
        assert self.bwrap is not None
        out = [
            self.bwrap,
            *_namespace_flags(network=network),
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--tmpfs",
            "/tmp",
            "--tmpfs",
            "/dev/shm",
        ]
        for root in tool_roots(argv[0] if argv else ""):
            out += ["--ro-bind", root, root]
        for path in [cwd, *writable]:
            out += ["--bind", path, path]
        for name in protected:
            inside = os.path.join(cwd, name)
            if os.path.lexists(inside) and not os.path.islink(inside):
                out += ["--ro-bind", inside, inside]
        return [*out, "--chdir", cwd, "--", *argv]
