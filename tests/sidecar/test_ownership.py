"""A pod belongs to the first label value it sees, for its whole life."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.ownership import Claim, Verdict


def test_the_first_label_claims_the_pod_and_the_same_one_again_is_no_news() -> None:
    claim = Claim()
    assert claim.observe("alice") is Verdict.CLAIMED
    assert claim.observe("alice") is Verdict.SAME
    assert claim.owner == "alice"


def test_another_label_is_a_conflict_and_never_changes_the_owner() -> None:
    claim = Claim()
    claim.observe("../x")
    assert claim.observe("alice") is Verdict.CONFLICT
    assert claim.observe("../x") is Verdict.SAME
    assert claim.owner == "../x"


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # verdicts, not speed
@given(st.lists(st.text(max_size=5), min_size=1))
def test_the_owner_is_always_the_first_value(labels: list[str]) -> None:
    claim = Claim()
    verdicts = [claim.observe(label) for label in labels]
    assert claim.owner == labels[0]
    assert verdicts[0] is Verdict.CLAIMED
    for label, verdict in zip(labels[1:], verdicts[1:], strict=True):
        assert verdict is (Verdict.SAME if label == labels[0] else Verdict.CONFLICT)


def test_a_restarted_sidecar_starts_from_the_owner_its_link_names() -> None:
    claim = Claim(owner="alice")
    assert claim.observe("alice") is Verdict.SAME
    assert claim.observe("bob") is Verdict.CONFLICT
    assert claim.owner == "alice"
