"""The cruiser as a Cloud Function (gen2, HTTP), called by Cloud Scheduler.

    functions-framework --target cruise --source cruiser/function.py

Reads the same `SDA_*` settings as the allocator. Answers 200 with the pass's JSON summary,
or 500 when any release failed (so the scheduler's retry policy applies; a retried call
releases nothing twice). `?dry_run=1` reports without changing anything.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import flask
import functions_framework

from allocator.backends import BackendUnavailable
from allocator.logs import configure
from allocator.runtime import Core
from allocator.settings import MEMORY_STORE, Settings, SettingsError, load_settings
from cruiser.reaper import CruiseOptions, cruise_once
from cruiser.summary import Summary

log = logging.getLogger(__name__)


@functions_framework.http
def cruise(request: flask.Request) -> tuple[dict[str, Any], int]:
    dry_run = request.args.get("dry_run", "").lower() in ("1", "true", "yes")
    try:
        settings = load_settings()
        if settings.redis_url == MEMORY_STORE:
            raise SettingsError("SDA_REDIS_URL must name the allocator's Redis, not 'memory'")
    except SettingsError as exc:
        log.error("cruise: %s", exc)
        return {"error": str(exc)}, 500
    configure(settings.log_level, settings.log_format)
    try:
        summary = asyncio.run(_one_pass(settings, dry_run))
    except BackendUnavailable as exc:
        log.error("cruise: %s", exc)
        return {"error": str(exc)}, 500
    return summary.as_json(), 200 if summary.ok else 500


async def _one_pass(settings: Settings, dry_run: bool) -> Summary:
    # A fresh store and API client per call: each call runs in its own event loop.
    core = Core.build(settings)
    try:
        return await cruise_once(
            core.store, core.backend, CruiseOptions.from_settings(settings, core.backend, dry_run)
        )
    finally:
        await core.close()
