"""HeaderIdentity: trust an email header set by a proxy in front of us (opt-in, unsigned)."""

from __future__ import annotations

import logging

from allocator.identity.emails import person_from_email
from allocator.types import Person, Scope

log = logging.getLogger(__name__)

_MEMO_LIMIT = 10_000


class HeaderIdentity:
    mode = "header"
    login_path = None

    def __init__(self, header: str) -> None:
        self.header = header
        self._name = header.lower().encode("latin-1")
        self._memo: dict[bytes, Person | None] = {}

    async def start(self) -> None:
        log.warning(
            "SDA_IDENTITY=header: trusting the unsigned %s header. Anyone who can reach this "
            "port can claim any identity; use it only behind a proxy that sets and strips it "
            "(behind Google IAP use SDA_IDENTITY=iap).",
            self.header,
        )

    async def close(self) -> None:
        return None

    async def readiness_problem(self) -> str | None:
        return None

    async def identify(self, scope: Scope) -> Person | None:
        found = None
        for name, value in scope["headers"]:
            if name == self._name:
                if found is not None:
                    return None  # two claims: a proxy appended instead of replacing
                found = value
        return None if found is None else self._person(found)

    def _person(self, value: bytes) -> Person | None:
        try:
            return self._memo[value]
        except KeyError:
            pass
        person = person_from_email(value.decode("latin-1"))
        if len(self._memo) >= _MEMO_LIMIT:
            self._memo.clear()
        self._memo[value] = person
        return person
