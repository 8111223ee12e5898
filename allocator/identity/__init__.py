"""Who is asking. One module per way of knowing, chosen here from the settings."""

from __future__ import annotations

from allocator.settings import Settings
from allocator.types import Identity


class IdentityUnavailable(Exception):
    """The configured identity mode cannot be used in this build."""


def create_identity(settings: Settings) -> Identity:
    if settings.identity == "dev":
        from allocator.identity.dev import DevIdentity, secret_key

        secret = settings.secret_key.get_secret_value() if settings.secret_key else None
        return DevIdentity(secret_key(secret, settings.data_dir))
    if settings.identity == "header":
        from allocator.identity.header import HeaderIdentity

        return HeaderIdentity(settings.identity_header)
    from allocator.identity.iap import IapIdentity

    assert settings.iap_audience is not None  # checked by Settings
    return IapIdentity(
        settings.iap_audience,
        settings.iap_jwks_url,
        settings.identity_header,
        settings.iap_key_refetch,
    )
