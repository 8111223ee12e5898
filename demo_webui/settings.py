"""What one demo WebUI process needs to know: where it listens and whose folders it uses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """One person's WebUI. Every path is absolute."""

    host: str
    port: int
    user_dir: Path
    outputs_dir: Path
    """Absolute but with its symlinks kept: a pod's WebUI saves through a link that is switched
    while it runs (``sidecar.link``), so the link is followed anew for every generation."""
    delay: float
    outdir_root: Path
    """The folder that ``/sdapi/v1/options`` may point the picture folders into."""
    hide_ui_dir_config: bool = False
    """A1111's ``--hide-ui-dir-config``: the picture folders cannot be changed at all."""

    @property
    def gradio_dir(self) -> Path:
        """Gradio's file cache for this person, never shared with another process."""
        return self.user_dir / ".gradio"
