"""Run installs and test commands as child processes, safely and boundedly.

Why it looks like this:

* argv lists only, never a shell: the command is exactly what the allowlist chose.
* The child gets its own session (``start_new_session=True``), so it and everything
  it spawns share one process group that we can signal as a whole: at the timeout
  (SIGTERM, then SIGKILL after a grace period) and after a normal exit (test
  runners leave servers and watchers behind).
* stdout/stderr go to temporary *files*, not pipes: a grandchild that inherits a
  pipe and lives on would keep us waiting for EOF forever; a file never blocks.
* Output is capped with head and tail kept (the head says what ran, the tail says
  how it ended) and a marker where bytes were dropped; reading seeks, so a child
  that writes gigabytes does not cost memory.
* In the OS sandbox (:mod:`adapters.sandbox`, bubblewrap) the child environment is
  built from an allowlist and the argv is wrapped in bwrap; without it the
  environment drops secret-named variables. Either way it is tagged with
  ``KODR_STEP_KEY`` so a later resume can find processes an interrupted attempt
  left behind (even ones that escaped the group with ``setsid``) through /proc.

* Captured output (tails and the whole log) passes the secret scrubber
  (:mod:`kodr_core.secrets`) before it leaves the runner.

Linux is the target (``/proc``); elsewhere group liveness falls back to
``killpg(pgid, 0)`` and :meth:`SubprocessRunner.kill_orphans` finds nothing.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING

from kodr_core.ports import ProcessResult
from kodr_core.secrets import Scrubber, secret_named

if TYPE_CHECKING:
    from adapters.sandbox import Confinement, Sandbox

STEP_KEY_VAR = "KODR_STEP_KEY"

#: Names removed from the child environment outright.
SECRET_NAMES = frozenset(
    {
        "OPENAI_API_KEY",
        "OPENROUTER_API_KEY",
        "KODR_API_KEY",
        "ANTHROPIC_API_KEY",
        "KODR_DATABASE_URL",
        "AWS_SECRET_ACCESS_KEY",
    }
)
#: Any name ending in one of these (compared upper-cased) is removed too. This also
#: drops NPM_TOKEN / NODE_AUTH_TOKEN: a private registry needs them passed explicitly
#: through the caller's ``env`` overrides.
SECRET_SUFFIXES = ("_API_KEY", "_TOKEN", "_SECRET", "_SECRET_KEY", "_PASSWORD")

#: Quiet, non-interactive, deterministic tools.
CHILD_DEFAULTS = {
    "CI": "1",
    "NO_COLOR": "1",
    "FORCE_COLOR": "0",
    "npm_config_fund": "false",
    "npm_config_audit": "false",
    "npm_config_update_notifier": "false",
}

HEAD_BYTES = 8 * 1024
TAIL_BYTES = 24 * 1024
LOG_HEAD_BYTES = 1024 * 1024  # per stream: 1 MiB head + 3 MiB tail, so ~8 MiB for both
LOG_TAIL_BYTES = 3 * 1024 * 1024


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def is_secret_name(name: str) -> bool:
    upper = name.upper()
    return upper in SECRET_NAMES or upper.endswith(SECRET_SUFFIXES) or secret_named(name)


def child_env(
    base: Mapping[str, str],
    overrides: Mapping[str, str] | None = None,
    step_key: str | None = None,
) -> dict[str, str]:
    """``base`` minus secrets, plus the quiet defaults, the caller's overrides and the tag."""
    env = {k: v for k, v in base.items() if not is_secret_name(k)}
    env.update(CHILD_DEFAULTS)
    env.update(overrides or {})
    if step_key:
        env[STEP_KEY_VAR] = step_key
    return env


def resolve_executable(argv0: str, cwd: str, path: str | None) -> str | None:
    """``<cwd>/.venv/bin/<argv0>`` first (the workspace's own pytest), then PATH.

    A name with a slash is taken relative to ``cwd``. Returns None when not found.
    """
    if os.path.isabs(argv0):
        return argv0 if _is_executable(argv0) else None
    if "/" in argv0:
        candidate = os.path.join(cwd, argv0)
        return candidate if _is_executable(candidate) else None
    venv = os.path.join(cwd, ".venv", "bin", argv0)
    if _is_executable(venv):
        return venv
    return shutil.which(argv0, path=path)


def _is_executable(p: str) -> bool:
    return os.path.isfile(p) and os.access(p, os.X_OK)


def _marker(omitted: int) -> bytes:
    return f"\n… [{omitted} bytes omitted] …\n".encode()


def read_capped(f: IO[bytes], head: int, tail: int) -> bytes:
    """The first ``head`` and last ``tail`` bytes of ``f``, with a marker between them."""
    size = os.fstat(f.fileno()).st_size
    f.seek(0)
    if size <= head + tail:
        return f.read()
    first = f.read(head)
    f.seek(size - tail)
    return first + _marker(size - head - tail) + f.read(tail)


def cap_bytes(data: bytes, head: int = HEAD_BYTES, tail: int = TAIL_BYTES) -> bytes:
    if len(data) <= head + tail:
        return data
    return data[:head] + _marker(len(data) - head - tail) + data[len(data) - tail :]


# -- process groups ------------------------------------------------------------


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) pids whose process group is ``pgid``."""
    if not os.path.isdir("/proc"):
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            members.append(int(name))
    return members


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def terminate_group(pgid: int, grace_s: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
    """SIGTERM the group, SIGKILL it if anything is alive after ``grace_s``.

    Returns True if any member was alive. ``proc`` (the leader) is reaped as we go,
    so its zombie does not count as alive.
    """
    if proc is not None:
        proc.poll()
    if not group_members(pgid):
        return False
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if proc is not None:
            proc.poll()
        if not group_members(pgid):
            return True
        time.sleep(0.05)
    _signal_group(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while group_members(pgid) and time.monotonic() < deadline:
        if proc is not None:
            proc.poll()
        time.sleep(0.02)
    return True


def wait_exit(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Wait for ``proc`` to exit, at most ``timeout_s``; True if it did (and is reaped).

    ``Popen.wait(timeout=...)`` polls with sleeps of up to 50 ms, so every step's exit
    was seen up to 50 ms late; a pidfd wakes us the moment the child exits. Without
    pidfds (not Linux, or a kernel before 5.3) it falls back to ``Popen.wait``.
    """
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        try:
            proc.wait(timeout=timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + timeout_s
        while not poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
            if time.monotonic() >= deadline:
                return proc.poll() is not None
    finally:
        os.close(fd)
    proc.wait()
    return True


def tagged_pids(step_key: str) -> list[int]:
    """Pids whose initial environment carries ``KODR_STEP_KEY=<step_key>``."""
    needle = f"{STEP_KEY_VAR}={step_key}".encode()
    me = os.getpid()
    found: list[int] = []
    if not os.path.isdir("/proc"):
        return found
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                entries = f.read().split(b"\0")
        except OSError:
            continue
        if needle in entries:
            found.append(int(name))
    return found


# -- the runner -----------------------------------------------------------------


class SubprocessRunner:
    """Runs one step's process (never a shell) in its own process group, on :mod:`subprocess`."""

    def __init__(
        self,
        *,
        kill_grace_s: float = 2.0,
        leftover_grace_s: float = 0.5,
        head_bytes: int = HEAD_BYTES,
        tail_bytes: int = TAIL_BYTES,
        base_env: Mapping[str, str] | None = None,
        sandbox: Sandbox | None = None,
        scrubber: Scrubber | None = None,
    ) -> None:
        self.kill_grace_s = kill_grace_s
        self.leftover_grace_s = leftover_grace_s
        self.head_bytes = head_bytes
        self.tail_bytes = tail_bytes
        self._base_env = base_env  # None: os.environ at each run
        self.sandbox = sandbox  # None: no OS sandbox (process group and filtered environment)
        self.scrubber = scrubber if scrubber is not None else Scrubber.of_env(os.environ)

    def confinement(self, *, network: bool) -> Confinement:
        """The confinement a process started now gets (raises SandboxUnavailable if required and absent)."""
        from adapters.sandbox import Confinement

        if self.sandbox is None:
            return Confinement("none", "off", True, "no OS sandbox: process group and filtered environment only")
        return self.sandbox.confinement(network=network)

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: str,
        timeout_s: float,
        env: Mapping[str, str] | None = None,
        step_key: str | None = None,
        network: bool = True,
        writable: Sequence[str] = (),
    ) -> ProcessResult:
        """``network``/``writable`` matter only in the OS sandbox: the network namespace, extra rw paths."""
        if isinstance(argv, (str, bytes)):
            raise TypeError("argv must be a list of strings, not a shell string")
        argv = [str(a) for a in argv]
        if not argv:
            raise ValueError("argv is empty")
        cwd = os.path.abspath(cwd)
        started_at, t0 = utc_now(), time.monotonic()
        base = os.environ if self._base_env is None else self._base_env
        from adapters.sandbox import SandboxUnavailable

        refused: str | None = None
        try:
            confined: Confinement | None = self.confinement(network=network)
        except SandboxUnavailable as e:  # --sandbox required on a machine without it
            confined, refused = None, str(e)
        sandboxed = confined is not None and confined.sandbox == "bwrap"
        if sandboxed:
            from adapters.sandbox import package_caches, sandbox_env

            caches = package_caches(base)
            full_env = child_env(sandbox_env(base), {**caches, "TMPDIR": "/tmp", **(env or {})}, step_key)
            writable = [*writable, *caches.values()]
        else:
            full_env = child_env(base, env, step_key)

        def failed(error: str) -> ProcessResult:
            return ProcessResult(
                argv=argv, cwd=cwd, exit_code=None, timed_out=False, duration_ms=0,
                started_at=started_at, finished_at=utc_now(), stdout="", stderr="", error=error,
            )  # fmt: skip

        if refused is not None:
            return failed(refused)
        if not os.path.isdir(cwd):
            return failed(f"working directory does not exist: {cwd}")
        exe = resolve_executable(argv[0], cwd, full_env.get("PATH"))
        if exe is None:
            return failed(f"executable not found: {argv[0]!r} (looked in {cwd}/.venv/bin and PATH)")

        command = [exe, *argv[1:]]
        if sandboxed:
            assert self.sandbox is not None
            command = self.sandbox.wrap(command, cwd=cwd, network=network, writable=writable)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(
                    command, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL,
                    stdout=out, stderr=err, start_new_session=True, close_fds=True,
                )  # fmt: skip
            except OSError as e:
                return failed(f"could not start {argv[0]!r}: {e}")
            timed_out = False
            try:
                if not wait_exit(proc, timeout_s):
                    timed_out = True
                    terminate_group(proc.pid, self.kill_grace_s, proc)
            finally:
                if proc.poll() is None:  # interrupted (KeyboardInterrupt…): leave nothing behind
                    terminate_group(proc.pid, 0.0, proc)
                proc.wait()
            duration_ms = int((time.monotonic() - t0) * 1000)
            finished_at = utc_now()
            # In the sandbox the step's processes live in its own PID namespace, which the
            # kernel empties when bwrap exits: nothing can be left over, so no /proc scans.
            if not timed_out and not sandboxed:
                terminate_group(proc.pid, self.leftover_grace_s)
            if step_key and not sandboxed:  # leftovers that left the group (setsid) but kept the tag
                self.kill_orphans(step_key)
            stdout = read_capped(out, self.head_bytes, self.tail_bytes)
            stderr = read_capped(err, self.head_bytes, self.tail_bytes)
            log = (
                read_capped(out, LOG_HEAD_BYTES, LOG_TAIL_BYTES)
                + (b"\n--- stderr ---\n" if os.fstat(err.fileno()).st_size else b"")
                + read_capped(err, LOG_HEAD_BYTES, LOG_TAIL_BYTES)
            )
        return ProcessResult(
            argv=argv,
            cwd=cwd,
            exit_code=None if timed_out else proc.returncode,
            timed_out=timed_out,
            duration_ms=duration_ms,
            started_at=started_at,
            finished_at=finished_at,
            stdout=self.scrubber.text(stdout.decode("utf-8", "replace")),
            stderr=self.scrubber.text(stderr.decode("utf-8", "replace")),
            log=self.scrubber.bytes(log),
        )

    def kill_orphans(self, step_key: str) -> int:
        """SIGKILL the process group of every process tagged with ``step_key``.

        Our own process group is never signalled (only the tagged pid itself).
        Returns the number of tagged processes found and signalled.
        """
        own_group = os.getpgrp()
        count = 0
        done: set[int] = set()
        for pid in tagged_pids(step_key):
            try:
                pgid = os.getpgid(pid)
                if pgid == own_group:
                    os.kill(pid, signal.SIGKILL)
                elif pgid not in done:
                    os.killpg(pgid, signal.SIGKILL)
                    done.add(pgid)
                count += 1
            except (ProcessLookupError, PermissionError):
                continue
        return count
