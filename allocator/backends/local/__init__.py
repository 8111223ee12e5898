"""The local backend: a WebUI process per person on this machine (`backend`), and the
registry every `serve` process on the machine shares (`registry`)."""

from allocator.backends.local.backend import LocalBackend

__all__ = ["LocalBackend"]
