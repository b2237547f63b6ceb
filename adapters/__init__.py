"""Adapters: everything that touches the world (processes, disk, HTTP, the CLI)."""
