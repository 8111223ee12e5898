"""Slugs are valid label values, readable, stable and never shared by two emails."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from allocator.identity.emails import person_from_email
from allocator.slugs import slug_for

LABEL_VALUE = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")


def test_the_predecessors_collision_is_gone() -> None:
    assert slug_for("a.b@c.com") != slug_for("a@b.c.com")


def test_slug_is_readable_and_stable() -> None:
    slug = slug_for("Alice.Smith@Example.com")
    assert slug.startswith("alice-smith-example-com-")
    assert slug == slug_for("alice.smith@example.com")
    assert re.fullmatch(r"[0-9a-f]{16}", slug.rsplit("-", 1)[1])


def test_slugs_never_change_between_releases() -> None:
    """Pinned values: a changed scheme would orphan every running pod and every folder."""
    assert slug_for("alice@example.com") == "alice-example-com-ff8d9819fc0e12bf"
    long_email = "Very.Long.Name.With.Many.Parts+tag@subdomain.department.example.co.uk"
    assert slug_for(long_email) == "very-long-name-with-many-parts-tag-subdomain-d-5e468459eb1a5075"


@given(st.text(min_size=1, max_size=400))
def test_any_text_gives_a_valid_label_value(text: str) -> None:
    assert LABEL_VALUE.match(slug_for(text)), text


@given(st.emails())
def test_every_email_gives_a_valid_label_value(email: str) -> None:
    slug = slug_for(email)
    assert len(slug) <= 63
    assert LABEL_VALUE.match(slug), slug


@given(st.emails(), st.emails())
def test_distinct_emails_give_distinct_slugs(first: str, second: str) -> None:
    if first.lower() != second.lower():
        assert slug_for(first) != slug_for(second)


def test_identity_normalises_and_refuses_garbage() -> None:
    person = person_from_email("accounts.google.com:Bob@Example.COM ")
    assert person is not None and person.email == "bob@example.com"
    for bad in [
        "",
        "bob",
        "bob@",
        "@x.com",
        "a b@x.com",
        "a@b",
        "<a@b.com>",
        "a@b.com\r\nX: 1",
        "x" * 250 + "@example.com",
    ]:
        assert person_from_email(bad) is None, bad


def test_control_characters_are_not_an_email() -> None:
    for bad in ["a\x01b@example.com", "a\x7fb@example.com", 'a"b@example.com', "a\tb@example.com"]:
        assert person_from_email(bad) is None, repr(bad)
