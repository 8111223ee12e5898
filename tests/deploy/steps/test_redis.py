"""The Redis server CA handed to the allocator and the function."""

from __future__ import annotations

from deploy.steps.redis import ca_bundle

OLD = "-----BEGIN CERTIFICATE-----\nOLD\n-----END CERTIFICATE-----\n"
NEW = "-----BEGIN CERTIFICATE-----\nNEW\n-----END CERTIFICATE-----"


def test_every_ca_of_a_rotation_is_trusted_in_a_stable_order() -> None:
    during = ca_bundle({"serverCaCerts": [{"cert": OLD}, {"cert": NEW}]})
    assert OLD.strip() in during and NEW.strip() in during
    assert during == ca_bundle({"serverCaCerts": [{"cert": NEW}, {"cert": OLD}]})
    assert during.count("-----BEGIN CERTIFICATE-----") == 2


def test_one_ca_is_passed_on_as_it_is() -> None:
    assert ca_bundle({"serverCaCerts": [{"cert": OLD}]}) == OLD.strip()
