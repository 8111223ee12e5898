"""Where WebUIs run. One module per place, chosen here from the settings."""

from __future__ import annotations

from allocator.settings import Settings
from allocator.types import Backend


class BackendUnavailable(Exception):
    """The configured backend cannot be used in this build or on this machine."""


def create_backend(settings: Settings) -> Backend:
    if settings.backend == "static":
        from allocator.backends.static import StaticBackend

        assert settings.static_target is not None  # checked by Settings
        return StaticBackend(settings.static_target)
    if settings.backend == "local":
        from allocator.backends.local import LocalBackend

        return LocalBackend.from_settings(settings)
    from allocator.backends.agones import AgonesBackend
    from allocator.backends.agones.client import KubeConfigError

    try:
        return AgonesBackend.from_settings(settings)
    except KubeConfigError as exc:
        raise BackendUnavailable(f"SDA_BACKEND=agones: {exc}") from exc
