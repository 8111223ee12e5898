"""Slugs and folders: a person's pictures go to their own folder and nowhere else."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.outputs import SLUG, SUBFOLDERS, UnsafeFolder, is_valid_slug, prepare_folders

valid_slugs = st.from_regex(SLUG, fullmatch=True)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # verdicts, not speed
@given(valid_slugs)
def test_a_valid_slug_names_one_folder_right_under_users(slug: str) -> None:
    assert is_valid_slug(slug)
    assert len(slug) <= 63 and slug not in (".", "..")
    users = Path("/share/users")
    assert (users / slug).resolve().parent == users
    assert Path(slug).name == slug


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # verdicts, not speed
@given(st.text(max_size=80))
def test_whatever_the_text_a_slug_that_passes_stays_a_plain_name(text: str) -> None:
    if is_valid_slug(text):
        assert SLUG.fullmatch(text)
        assert "/" not in text and "\n" not in text and "\x00" not in text
        assert text == text.strip() and text[0].isalnum() and text[-1].isalnum()


@pytest.mark.parametrize(
    "text",
    ["", ".", "..", "../x", "x/..", "a/b", "Alice", "a" * 64, "-a", "a-", ".a", "a.", "alice\n",
     "a\x00b", "a b", "é"],
)  # fmt: skip
def test_these_are_not_slugs(text: str) -> None:
    assert not is_valid_slug(text)
    with pytest.raises(UnsafeFolder):
        prepare_folders(Path("/nonexistent-share"), text)


def test_the_longest_slugs_pass() -> None:
    assert is_valid_slug("a" * 63) and is_valid_slug("a.b_c-d") and is_valid_slug("0")


def test_folders_are_created_group_only_and_returned_resolved(tmp_path: Path) -> None:
    folders = prepare_folders(tmp_path, "alice")
    assert folders.root == tmp_path.resolve() / "users" / "alice" / "outputs"
    assert set(folders.kinds) == set(SUBFOLDERS)
    for folder in folders.all():
        assert stat.S_IMODE(folder.stat().st_mode) == 0o770
    assert prepare_folders(tmp_path, "alice") == folders  # again: nothing to do, same answer


def test_an_operators_symlinked_users_folder_is_followed(tmp_path: Path) -> None:
    (tmp_path / "real-users").mkdir()
    (tmp_path / "share").mkdir()
    (tmp_path / "share" / "users").symlink_to(tmp_path / "real-users")
    folders = prepare_folders(tmp_path / "share", "alice")
    assert folders.root == tmp_path.resolve() / "real-users" / "alice" / "outputs"


@pytest.mark.parametrize(
    "planted",
    ["alice", "alice/outputs", "alice/outputs/txt2img-images", "alice/outputs/saved"],
)
def test_a_symlink_anywhere_below_users_is_refused(tmp_path: Path, planted: str) -> None:
    bob = tmp_path / "users" / "bob"
    bob.mkdir(parents=True)
    link = tmp_path / "users" / planted
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(bob)
    with pytest.raises(UnsafeFolder, match="symlink"):
        prepare_folders(tmp_path, "alice")
    assert list(bob.iterdir()) == []


def test_a_dangling_symlink_is_refused_and_not_created_through(tmp_path: Path) -> None:
    (tmp_path / "users").mkdir()
    (tmp_path / "users" / "alice").symlink_to(tmp_path / "not-yet")
    with pytest.raises(UnsafeFolder):
        prepare_folders(tmp_path, "alice")
    assert not (tmp_path / "not-yet").exists()


def test_a_file_where_a_folder_belongs_is_refused(tmp_path: Path) -> None:
    (tmp_path / "users" / "alice").mkdir(parents=True)
    (tmp_path / "users" / "alice" / "outputs").write_text("not a folder")
    with pytest.raises(UnsafeFolder, match="not a folder"):
        prepare_folders(tmp_path, "alice")


def test_the_subfolders_cover_every_outputs_option_but_the_two_that_override_them() -> None:
    """The WebUI is started with each of these options set to ``<OUTPUTS_LINK>/<folder>``."""
    from demo_webui.options import OUTDIR_KEYS

    assert set(SUBFOLDERS) | {"outdir_samples", "outdir_grids"} == set(OUTDIR_KEYS)
    assert len(set(SUBFOLDERS.values())) == len(SUBFOLDERS)
