"""Every error kodr raises to its callers is a KodrError: one message, one exit code at the CLI's edge.

The issue found ``UnknownEvent``, ``ModelError`` and ``InvalidProposal`` outside the
hierarchy (a stray one printed a traceback). This walks every module of the three
packages, so a new public exception class outside it fails here; the few that never
leave their module are listed with where they are turned into a KodrError.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import adapters
import kodr_core
import store
from kodr_core.envelope import InvalidProposal
from kodr_core.errors import KodrError, StoreCorrupt
from kodr_core.events import UnknownEvent
from kodr_core.ports import ModelError

#: Raised and caught inside one module (or a test hook), never seen by a caller.
INTERNAL = {
    "kodr_core.patch.EditRefused": "proposal_writes turns it into InvalidProposal",
    "adapters.model_stream.BadStream": "the OpenAI client turns it into ModelError",
    "adapters.faults.InjectedCrash": "a BaseException on purpose: the crash matrix's simulated kill",
    "adapters.cli.root.Terminated": "SIGTERM as a KeyboardInterrupt: the CLI's edge turns it into exit 143",
}
SKIP_MODULES = {"adapters.cli.__main__", "adapters.__main__"}


def _modules():
    for package in (kodr_core, store, adapters):
        yield package.__name__
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name not in SKIP_MODULES:
                yield info.name


def _exception_classes():
    for name in _modules():
        module = importlib.import_module(name)
        for attr, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == name:
                yield f"{name}.{attr}", obj


def test_every_public_error_is_a_kodr_error():
    found = dict(_exception_classes())
    assert len(found) > 10, "the walk found too few exception classes to mean anything"
    outside = sorted(
        name
        for name, cls in found.items()
        if not issubclass(cls, KodrError) and name not in INTERNAL and not name.rsplit(".", 1)[1].startswith("_")
    )
    assert outside == [], f"errors outside KodrError: {outside}"
    assert set(INTERNAL) <= set(found), "an INTERNAL entry names a class that no longer exists"


@pytest.mark.parametrize(
    "error",
    [ModelError("timeout", "the model took too long"), InvalidProposal("no JSON object"), UnknownEvent("x v9")],
)
def test_the_named_ones_carry_their_message(error):
    assert isinstance(error, KodrError) and error.message == str(error)


def test_unknown_event_is_a_store_problem():
    assert issubclass(UnknownEvent, StoreCorrupt)
