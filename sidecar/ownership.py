"""Whose pod this is, and pointing the WebUI's outputs at that person's folder.

The first value of the label ``sd-allocator/user`` the pod sees makes its owner for life. The
same value again changes nothing. A different one means the pod was given to a second person: the
outputs stay where they are and the sidecar asks Agones to shut the pod down (the Fleet replaces
it), because the second person would otherwise see, and add to, the first one's pictures. A value
that is no safe slug, or whose folder resolves elsewhere, is refused: the WebUI keeps its own
outputs folder, and the pod still belongs to that value.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from pathlib import Path

from sidecar.outputs import UnsafeFolder, prepare_folders
from sidecar.pacing import retry_forever
from sidecar.sdk import AgonesSDK, GameServer, SDKError
from sidecar.webui import WebUI, WebUIError

log = logging.getLogger(__name__)

USER_LABEL = "sd-allocator/user"


class Verdict(enum.Enum):
    CLAIMED = "claimed"
    SAME = "same owner"
    CONFLICT = "another owner"


class Claim:
    """The owner: the first label value seen, never replaced."""

    def __init__(self) -> None:
        self.owner: str | None = None

    def observe(self, label: str) -> Verdict:
        if self.owner is None:
            self.owner = label
            return Verdict.CLAIMED
        return Verdict.SAME if label == self.owner else Verdict.CONFLICT


class Ownership:
    """Acts on each GameServer update; the slow parts run as tasks in ``tasks``."""

    def __init__(
        self, share_dir: Path, webui: WebUI, sdk: AgonesSDK, tasks: asyncio.TaskGroup
    ) -> None:
        self._share_dir = share_dir
        self._webui = webui
        self._sdk = sdk
        self._tasks = tasks
        self._claim = Claim()
        self._switching: asyncio.Task[None] | None = None
        self._shutting_down = False

    def observe(self, gameserver: GameServer) -> None:
        label = gameserver.labels.get(USER_LABEL)
        if label is None:
            return
        verdict = self._claim.observe(label)
        if verdict is Verdict.CLAIMED:
            log.info("the pod is given to %.80r", label)
            self._switching = self._tasks.create_task(self._switch_outputs(label))
        elif verdict is Verdict.CONFLICT and not self._shutting_down:
            self._shutting_down = True
            log.error(
                "the pod belongs to %.80r but its label now says %.80r; not switching, asking "
                "Agones to shut the pod down",
                self._claim.owner,
                label,
            )
            if self._switching is not None:
                self._switching.cancel()
            self._tasks.create_task(self._shut_down())

    async def _switch_outputs(self, slug: str) -> None:
        async def switch() -> None:
            folders = await asyncio.to_thread(prepare_folders, self._share_dir, slug)
            await self._webui.send_outputs_to(folders)
            log.info("the WebUI now saves %s's pictures in %s", slug, folders.root)

        try:
            await retry_forever(
                switch, f"pointing the outputs at {slug}'s folder", retry_on=(OSError, WebUIError)
            )
        except UnsafeFolder as error:
            log.error("refusing to point the outputs at %.80r: %s", slug, error)

    async def _shut_down(self) -> None:
        await retry_forever(self._sdk.shutdown, "POST /shutdown", retry_on=(SDKError,))
        log.info("Agones was asked to shut the GameServer down")
