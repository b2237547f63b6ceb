"""kodr's domain: the run machine, its events, the fold, and the policies.

Nothing in this package performs I/O: no SQL, no HTTP, no subprocess, no files.
The engine reaches the world only through the ports in :mod:`kodr_core.ports`.
"""
