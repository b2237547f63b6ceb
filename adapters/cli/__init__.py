"""The ``kodr`` command line: the entry point users reach for, and the composition root.

One module per command group: :mod:`~adapters.cli.running` (run, plan, heal,
resume), :mod:`~adapters.cli.reading` (runs, show, events, explain, artifacts),
:mod:`~adapters.cli.admin` (replay, audit, db, demo). Shared flags live in
:mod:`~adapters.cli.flags`, exit codes in :mod:`~adapters.cli.exits`. A command
defined elsewhere registers with one line: ``LAZY["name"] = ("module:attr", "help")``
in :mod:`~adapters.cli.root` (imported only when used), or ``cli.add_command(cmd)``.
"""

from adapters.cli import admin, reading, running  # noqa: F401 - registers the commands
from adapters.cli.root import cli, console, main

__all__ = ["cli", "console", "main"]
