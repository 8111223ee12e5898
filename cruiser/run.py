"""Running passes from the command line: one (`--once`) or one every interval."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from allocator.runtime import Core
from allocator.settings import Settings
from cruiser.loop import cruise_forever
from cruiser.reaper import CruiseOptions, cruise_once
from cruiser.summary import Summary


def run_passes(
    settings: Settings, once: bool, dry_run: bool, report: Callable[[Summary], None]
) -> bool:
    """Whether the (last) pass released everything it meant to."""

    async def passes() -> bool:
        core = Core.build(settings)
        options = CruiseOptions.from_settings(settings, core.backend, dry_run)
        try:
            if once:
                summary = await cruise_once(core.store, core.backend, options)
                report(summary)
                return summary.ok
            await cruise_forever(
                core.store, core.backend, options, settings.cruise_interval, after_pass=report
            )
            return True
        finally:
            await core.close()

    return asyncio.run(passes())
