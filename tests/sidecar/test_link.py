"""The outputs link: switched in one step, kept across a restart, and never deleting anything."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest

from sidecar.link import TEMPORARY_PREFIX, LinkError, OutputsLink
from sidecar.outputs import SUBFOLDERS, prepare_folders


@pytest.fixture
def share(tmp_path: Path) -> Path:
    folder = tmp_path / "share"
    folder.mkdir()
    return folder


@pytest.fixture
def link(tmp_path: Path, share: Path) -> OutputsLink:
    workspace = tmp_path / "workspace"
    return OutputsLink(workspace / "outputs", workspace / "unassigned-outputs", share)


def target(link: OutputsLink) -> Path:
    return Path(os.readlink(link.path))


def test_at_start_the_link_points_at_the_unassigned_folder(link: OutputsLink) -> None:
    assert link.adopt() is None
    assert target(link) == link.unassigned
    for name in ("", *SUBFOLDERS.values()):
        folder = link.unassigned / name
        assert folder.is_dir() and stat.S_IMODE(folder.stat().st_mode) == 0o770, folder


def test_a_link_to_a_persons_folder_is_kept_and_names_the_owner(
    link: OutputsLink, share: Path
) -> None:
    link.adopt()
    link.point_at(prepare_folders(share, "alice").root)
    before = os.lstat(link.path)

    assert link.adopt() == "alice"  # the sidecar's container restarted
    assert os.lstat(link.path).st_ino == before.st_ino, "the link must not even be re-made"


@pytest.mark.parametrize(
    "elsewhere",
    ["/etc", "relative/users/alice/outputs", "{share}-other/users/alice/outputs",
     "{share}/users/Alice/outputs", "{share}/users/alice/outputs/..", "{share}/users/alice"],
)  # fmt: skip
def test_a_link_to_anything_else_is_pointed_back_and_its_target_left_alone(
    elsewhere: str, link: OutputsLink, share: Path
) -> None:
    old_target = Path(elsewhere.format(share=share))
    link.path.parent.mkdir(parents=True)
    link.path.symlink_to(old_target)

    assert link.adopt() is None
    assert target(link) == link.unassigned
    if old_target.is_absolute() and old_target.exists():
        assert old_target.is_dir()


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_a_real_folder_or_file_where_the_link_belongs_is_refused_and_kept(
    kind: str, link: OutputsLink
) -> None:
    link.path.parent.mkdir(parents=True)
    if kind == "folder":
        link.path.mkdir()
        (link.path / "picture.png").write_bytes(b"someone's picture")
    else:
        link.path.write_bytes(b"a file")

    with pytest.raises(LinkError) as raised:
        link.adopt()
    assert "\n" not in str(raised.value) and "not a symlink" in str(raised.value)
    with pytest.raises(LinkError):
        link.point_at(link.unassigned)
    if kind == "folder":
        assert (link.path / "picture.png").read_bytes() == b"someone's picture"
    else:
        assert link.path.read_bytes() == b"a file"
    assert [p.name for p in link.path.parent.iterdir()] == ["outputs"]


def test_a_reader_never_finds_the_link_missing_while_it_is_switched(
    link: OutputsLink, share: Path
) -> None:
    link.adopt()
    alice = prepare_folders(share, "alice").root
    stop = threading.Event()
    misses: list[BaseException] = []
    seen: set[str] = set()

    def read() -> None:
        while not stop.is_set():
            try:
                seen.add(os.readlink(link.path))
            except OSError as error:
                misses.append(error)

    reader = threading.Thread(target=read)
    reader.start()
    switches, deadline = 0, time.monotonic() + 60
    try:
        # On until the reader has seen Alice's folder too, so that it surely read while the
        # link was switched, however the two threads were scheduled.
        while switches < 500 or str(alice) not in seen:
            assert time.monotonic() < deadline, "the reader never ran while the link switched"
            link.point_at(alice)
            link.point_at(link.unassigned)
            switches += 1
    finally:
        stop.set()
        reader.join()
    assert misses == []
    assert seen == {str(alice), str(link.unassigned)}
    assert [p.name for p in link.path.parent.iterdir() if p.name.startswith(".")] == []


def test_leftovers_of_a_crashed_switch_are_removed_at_start_but_nothing_else(
    link: OutputsLink,
) -> None:
    link.path.parent.mkdir(parents=True)
    (link.path.parent / f"{TEMPORARY_PREFIX}0123").symlink_to("/somewhere")
    (link.path.parent / f"{TEMPORARY_PREFIX}notes").write_text("not ours to delete")

    link.adopt()
    names = sorted(p.name for p in link.path.parent.iterdir())
    assert names == [f"{TEMPORARY_PREFIX}notes", "outputs", "unassigned-outputs"]
