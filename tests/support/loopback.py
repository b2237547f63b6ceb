"""A TCP listener on loopback that accepts and drops every connection: something a test
process may or may not be able to reach, depending on its network namespace."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def accepting_port() -> Iterator[int]:
    """The port of a loopback listener that accepts until the block ends."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def serve() -> None:
        try:
            while True:
                srv.accept()[0].close()
        except OSError:  # closed at the end of the block
            pass

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield srv.getsockname()[1]
    finally:
        srv.close()
