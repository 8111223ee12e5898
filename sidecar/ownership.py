"""Whose pod this is, and delivering the WebUI's files to that person's folder.

The first value of the label ``sd-allocator/user`` the pod sees makes its owner for life; it is
kept in the sidecar's journal, so a sidecar restarted in the same pod starts from it, checks that
folder again and confirms it again. The same value again changes nothing. A different one means
the pod was given to a second person: delivery stops for good (the second person must neither see
nor add to the first one's pictures) and the sidecar asks Agones to shut the pod down (the Fleet
replaces it). A value that is no safe slug, or whose folder resolves elsewhere, is refused: files
are held, nothing is delivered, and the pod still belongs to that value.

Once the person's folder exists and is checked, and their kept WebUI settings were given to the
WebUI (`sidecar.options_keeper`), the sidecar confirms it to Agones: ``PUT
/metadata/annotation`` ``sd-allocator-outputs`` = the slug, which Agones stores as the GameServer
annotation ``agones.dev/sdk-sd-allocator-outputs`` — "this pod delivers to <slug>'s folder". The
allocator may wait for it before routing.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from pathlib import Path

from sidecar.delivery import Delivery
from sidecar.errors import describe
from sidecar.journal import Journal
from sidecar.options_keeper import OptionsKeeper
from sidecar.outputs import UnsafeFolder, prepare_folders
from sidecar.pacing import retry_forever
from sidecar.sdk import AgonesSDK, GameServer, SDKError

log = logging.getLogger(__name__)

USER_LABEL = "sd-allocator/user"
OUTPUTS_ANNOTATION = "sd-allocator-outputs"
"""The key of ``PUT /metadata/annotation``; on the GameServer it is `OUTPUTS_ANNOTATION_SEEN_AS`."""
OUTPUTS_ANNOTATION_SEEN_AS = f"agones.dev/sdk-{OUTPUTS_ANNOTATION}"
GIVE_WAIT = 8.0
"""Seconds from the label to the confirmation that may go to giving the person's kept settings to
the WebUI: well below the allocator's wait for it (``SDA_OUTPUTS_WAIT``, 15 s), which fails the
allocation."""


class Verdict(enum.Enum):
    CLAIMED = "claimed"
    SAME = "same owner"
    CONFLICT = "another owner"


class Claim:
    """The owner: the first label value seen (or the one a restarted sidecar found), for life."""

    def __init__(self, owner: str | None = None) -> None:
        self.owner = owner

    def observe(self, label: str) -> Verdict:
        if self.owner is None:
            self.owner = label
            return Verdict.CLAIMED
        return Verdict.SAME if label == self.owner else Verdict.CONFLICT


class Ownership:
    """Acts on each GameServer update; the slow parts run as tasks in ``tasks``."""

    def __init__(
        self,
        share_dir: Path,
        journal: Journal,
        delivery: Delivery,
        keeper: OptionsKeeper,
        sdk: AgonesSDK,
        tasks: asyncio.TaskGroup,
    ) -> None:
        self._share_dir = share_dir
        self._journal = journal
        self._delivery = delivery
        self._keeper = keeper
        self._sdk = sdk
        self._tasks = tasks
        self._claim = Claim(journal.owner)
        self._preparing: asyncio.Task[None] | None = None
        self._shutting_down = False

    def resume(self) -> None:
        """After a restart in a pod that had an owner: check the folder again, confirm again."""
        if self._claim.owner is not None:
            log.info("the pod was given to %.80r before this sidecar restarted", self._claim.owner)
            self._preparing = self._tasks.create_task(self._deliver_to(self._claim.owner))

    def observe(self, gameserver: GameServer) -> None:
        label = gameserver.labels.get(USER_LABEL)
        if label is None:
            return
        verdict = self._claim.observe(label)
        if verdict is Verdict.CLAIMED:
            log.info("the pod is given to %.80r", label)
            self._remember(label)
            self._preparing = self._tasks.create_task(self._deliver_to(label))
        elif verdict is Verdict.CONFLICT and not self._shutting_down:
            self._shutting_down = True
            log.error(
                "the pod belongs to %.80r but its label now says %.80r; delivering nothing more, "
                "asking Agones to shut the pod down",
                self._claim.owner,
                label,
            )
            if self._preparing is not None:
                self._preparing.cancel()
            self._delivery.close()
            self._keeper.stop()
            self._tasks.create_task(self._shut_down())

    def _remember(self, label: str) -> None:
        try:
            self._journal.set_owner(label)
        except OSError as error:
            log.error("the owner could not be written to the journal: %s", describe(error))

    async def _deliver_to(self, slug: str) -> None:
        claimed = time.monotonic()

        async def prepare() -> Path:
            folders = await asyncio.to_thread(prepare_folders, self._share_dir, slug)
            return folders.root

        try:
            root = await retry_forever(prepare, f"preparing {slug}'s folder", retry_on=(OSError,))
        except UnsafeFolder as error:
            log.error("refusing to deliver to %.80r: %s", slug, error)
            return
        self._delivery.deliver_to(root)
        log.info("the WebUI's files are delivered to %s's folder %s", slug, root)
        self._keeper.start(slug, self._tasks)
        if not await self._keeper.given(GIVE_WAIT - (time.monotonic() - claimed)):
            log.info("the WebUI is still taking %s's kept settings; confirming meanwhile", slug)
        await retry_forever(
            lambda: self._sdk.set_annotation(OUTPUTS_ANNOTATION, slug),
            "PUT /metadata/annotation",
            retry_on=(SDKError,),
        )
        log.info("Agones was told: %s=%s", OUTPUTS_ANNOTATION_SEEN_AS, slug)

    async def _shut_down(self) -> None:
        await retry_forever(self._sdk.shutdown, "POST /shutdown", retry_on=(SDKError,))
        log.info("Agones was asked to shut the GameServer down")
