"""Label and field selectors, and the label rules, as kube-apiserver applies them."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fake_agones import fields, labels
from fake_agones.validation import label_value_errors, qualified_name_errors

LABELS = {"agones.dev/fleet": "sd-webui", "sd-allocator/user": "alice", "gpu": "2"}


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("", True),
        ("gpu", True),
        ("!gpu", False),
        ("!missing", True),
        ("sd-allocator/user=alice", True),
        ("sd-allocator/user==bob", False),
        ("sd-allocator/user!=bob", True),
        ("missing!=x", True),
        ("sd-allocator/user in (bob, alice)", True),
        ("sd-allocator/user notin (alice)", False),
        ("missing notin (x)", True),
        ("gpu>1", True),
        ("gpu<2", False),
        ("agones.dev/fleet=sd-webui,sd-allocator/user=bob", False),
        ("missing=", False),
    ],
)
def test_string_selectors_match_as_kube_matches(text: str, matches: bool) -> None:
    assert labels.parse(text).matches(LABELS) is matches


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a in b", "unable to parse requirement: found 'b', expected: '('"),
        ("a,", "found 'None', expected: identifier after ','"),
        ("a in ()", "for 'in', 'notin' operators, values set can't be empty"),
        ("gpu>x", "for 'Gt', 'Lt' operators, the value must be an integer"),
        ("-a=b", 'key: Invalid value: "-a"'),
    ],
)
def test_bad_string_selectors_are_refused(text: str, message: str) -> None:
    with pytest.raises(labels.SelectorError) as raised:
        labels.parse(text)
    assert message in str(raised.value)


def test_label_selector_objects_convert_like_label_selector_as_selector() -> None:
    selector = labels.from_label_selector(
        {
            "matchLabels": {"agones.dev/fleet": "sd-webui"},
            "matchExpressions": [
                {"key": "sd-allocator/user", "operator": "In", "values": ["alice"]},
                {"key": "missing", "operator": "DoesNotExist"},
            ],
        }
    )
    assert selector.matches(LABELS)
    assert labels.from_label_selector({}).matches({})
    with pytest.raises(labels.SelectorError, match="values set must be empty"):
        labels.from_label_selector(
            {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}
        )


VALUE = st.from_regex(r"[a-z0-9]([a-z0-9._-]{0,10}[a-z0-9])?", fullmatch=True)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # verdicts, not speed
@given(
    st.dictionaries(st.sampled_from(["a", "b", "c"]), VALUE),
    st.sampled_from(["a", "b", "c"]),
    st.lists(VALUE, min_size=1, max_size=3),
)
def test_notin_is_exactly_the_complement_of_in(
    present: dict[str, str], key: str, values: list[str]
) -> None:
    inside = labels.parse(f"{key} in ({','.join(values)})").matches(present)
    outside = labels.parse(f"{key} notin ({','.join(values)})").matches(present)
    assert inside != outside


def test_label_rules_are_kubes() -> None:
    assert label_value_errors("") == []
    assert label_value_errors("alice.example-1_2") == []
    assert label_value_errors("alice@example.com")
    assert label_value_errors("-alice")
    assert label_value_errors("a" * 63) == []
    assert label_value_errors("a" * 64) == ["must be no more than 63 characters"]
    assert qualified_name_errors("sd-allocator/user") == []
    assert qualified_name_errors("Sd_Allocator/user") != []  # the prefix is a DNS subdomain
    assert qualified_name_errors("a/b/c") != []


def test_field_selectors_support_names_namespaces_and_selectable_fields() -> None:
    gs = {
        "metadata": {"name": "gs-1", "namespace": "default"},
        "status": {"state": "Ready", "nodeName": "node"},
    }
    assert fields.parse("status.state=Ready,metadata.name==gs-1").matches(gs)
    assert not fields.parse("status.state!=Ready").matches(gs)
    assert fields.parse("status.nodeName=node,metadata.namespace=default").matches(gs)
    with pytest.raises(fields.FieldSelectorError, match=r"field label not supported: spec\.x"):
        fields.parse("spec.x=1")
