"""Whose pod this is, and pointing the outputs link at that person's folder.

The first value of the label ``sd-allocator/user`` the pod sees makes its owner for life; a sidecar
restarted in the same pod starts from the owner its outputs link already names
(`sidecar.link.OutputsLink.adopt`), checks that folder again and confirms it again. The same value
again changes nothing. A different one means the pod was given to a second person: the link goes
back to the pod-local unassigned folder, never to the second person's folder, and the sidecar asks
Agones to shut the pod down (the Fleet replaces it), because the second person would otherwise see,
and add to, the first one's pictures. A value that is no safe slug, or whose folder resolves
elsewhere, is refused: the link stays on (or goes back to) the unassigned folder, and the pod still
belongs to that value.

Once the link points at the person's folder, the sidecar confirms it to Agones: ``PUT
/metadata/annotation`` ``sd-allocator-outputs`` = the slug, which Agones stores as the GameServer
annotation ``agones.dev/sdk-sd-allocator-outputs``. The allocator may wait for it before routing.

The link is pod-local, so switching it takes microseconds and is done on the event loop: a switch
and a refusal or conflict never interleave. Only the checks on the share run in a worker thread.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from pathlib import Path

from sidecar.errors import describe
from sidecar.link import LinkError, OutputsLink
from sidecar.outputs import UnsafeFolder, prepare_folders
from sidecar.pacing import retry_forever
from sidecar.sdk import AgonesSDK, GameServer, SDKError

log = logging.getLogger(__name__)

USER_LABEL = "sd-allocator/user"
OUTPUTS_ANNOTATION = "sd-allocator-outputs"
"""The key of ``PUT /metadata/annotation``; on the GameServer it is `OUTPUTS_ANNOTATION_SEEN_AS`."""
OUTPUTS_ANNOTATION_SEEN_AS = f"agones.dev/sdk-{OUTPUTS_ANNOTATION}"


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
        link: OutputsLink,
        sdk: AgonesSDK,
        tasks: asyncio.TaskGroup,
        owner: str | None = None,
    ) -> None:
        self._share_dir = share_dir
        self._link = link
        self._sdk = sdk
        self._tasks = tasks
        self._claim = Claim(owner)
        self._switching: asyncio.Task[None] | None = None
        self._shutting_down = False

    def resume(self) -> None:
        """After a restart with the link on a person's folder: check it again, confirm it again."""
        if self._claim.owner is not None:
            self._switching = self._tasks.create_task(self._switch_outputs(self._claim.owner))

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
            self._detach()
            self._tasks.create_task(self._shut_down())

    async def _switch_outputs(self, slug: str) -> None:
        async def switch() -> Path:
            folders = await asyncio.to_thread(prepare_folders, self._share_dir, slug)
            self._link.point_at(folders.root)
            return folders.root

        try:
            root = await retry_forever(
                switch, f"pointing the outputs at {slug}'s folder", retry_on=(OSError,)
            )
        except (UnsafeFolder, LinkError) as error:
            log.error("refusing to point the outputs at %.80r: %s", slug, error)
            self._detach()
            return
        log.info("the WebUI now saves %s's pictures in %s", slug, root)
        await retry_forever(
            lambda: self._sdk.set_annotation(OUTPUTS_ANNOTATION, slug),
            "PUT /metadata/annotation",
            retry_on=(SDKError,),
        )
        log.info("Agones was told: %s=%s", OUTPUTS_ANNOTATION_SEEN_AS, slug)

    def _detach(self) -> None:
        try:
            self._link.detach()
        except (OSError, LinkError) as error:
            log.error(
                "pointing the outputs link back at the unassigned folder failed: %s",
                describe(error),
            )

    async def _shut_down(self) -> None:
        await retry_forever(self._sdk.shutdown, "POST /shutdown", retry_on=(SDKError,))
        log.info("Agones was asked to shut the GameServer down")
