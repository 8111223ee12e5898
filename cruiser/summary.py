"""What one cruiser pass did, as the CLI, the Cloud Function and the logs report it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Failure:
    email: str
    server: str
    error: str


@dataclass
class Summary:
    candidates: int = 0
    reclaimed: int = 0
    kept_busy: int = 0
    kept_active: int = 0
    failed: int = 0
    orphans_deleted: int = 0
    stale_mappings_dropped: int = 0
    seconds: float = 0.0
    dry_run: bool = False
    would_reclaim: int = 0
    queued: int = 0  # people waiting for a GPU during the pass (the pressure timeout applied)
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def fail(self, email: str, server: str, error: str) -> None:
        self.failed += 1
        self.failures.append(Failure(email, server, error))

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        return data

    def line(self) -> str:
        """One line for people and logs."""
        text = (
            f"{self.candidates} candidates: {self.reclaimed} reclaimed, "
            f"{self.kept_busy} kept busy, {self.kept_active} kept active, {self.failed} failed; "
            f"{self.orphans_deleted} orphans deleted, "
            f"{self.stale_mappings_dropped} stale mappings dropped ({self.seconds:.2f} s)"
        )
        if self.queued:
            text += f"; {self.queued} queued"
        return f"dry run: {self.would_reclaim} would be reclaimed; {text}" if self.dry_run else text
