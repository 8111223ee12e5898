"""People as backends see them, for tests that call a backend directly."""

from __future__ import annotations

from allocator.identity.emails import person_from_email
from allocator.types import Person, State


def person(email: str) -> Person:
    found = person_from_email(email)
    assert found is not None
    return found


async def no_progress(state: State, message: str) -> None:
    """A progress callback for an allocation nobody is watching."""
    return None
