"""Errors in log lines."""

from __future__ import annotations


def describe(error: BaseException) -> str:
    """An error in a few words, also one whose str() is empty (aiohttp's timeouts)."""
    return str(error) or type(error).__name__
