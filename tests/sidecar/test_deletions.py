"""Requests to delete a picture (from "My pictures" behind Agones) carried out by a sidecar.

`Deletions.sweep` runs here directly on real folders: every request is read as hostile, and
only the very file asked for, reached without following a link, inside the person's own
outputs folder, is ever removed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sidecar import deletion_requests
from sidecar.deletion_requests import SUFFIX, Deletion, key_of
from sidecar.deletions import Deletions

ANN, BOB = "ann-example-com-0123456789abcdef", "bob-example-com-fedcba9876543210"


class Share:
    def __init__(self, root: Path) -> None:
        self.users = root / "users"
        self.deletions = root / "deletions"
        self.deletions.mkdir(parents=True)

    def picture(self, slug: str, name: str, data: bytes = b"a picture") -> Path:
        path = self.users / slug / "outputs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def ask(self, slug: str, path: Path, name: str | None = None) -> None:
        info = path.lstat()
        relative = name or str(path.relative_to(self.users / slug / "outputs"))
        deletion = Deletion(relative, info.st_size, info.st_mtime_ns)
        deletion_requests.write(self.deletions, slug, deletion)

    def requests(self, slug: str) -> list[str]:
        folder = self.deletions / slug
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []

    def sweep(self) -> int:
        return Deletions(self.users, self.deletions).sweep()


@pytest.fixture
def share(tmp_path: Path) -> Share:
    return Share(tmp_path)


def test_the_picture_asked_for_is_deleted_and_so_is_the_request(share: Share) -> None:
    picture = share.picture(ANN, "txt2img-images/2026-12-05/00001-1.png")
    kept = share.picture(ANN, "txt2img-images/2026-12-05/00002-2.png")
    share.ask(ANN, picture)
    share.ask(ANN, picture)  # asked twice: one request

    assert share.requests(ANN) == [key_of(str(picture.relative_to(picture.parents[2]))) + SUFFIX]
    assert share.sweep() == 1
    assert not picture.exists() and kept.exists()
    assert share.requests(ANN) == []
    assert share.sweep() == 0, "a second sidecar finds nothing left to do"


def test_a_later_picture_with_the_same_name_is_not_deleted(share: Share) -> None:
    picture = share.picture(ANN, "a.png", b"the first")
    share.ask(ANN, picture)
    picture.unlink()
    share.picture(ANN, "a.png", b"a second, different picture")
    assert share.sweep() == 0
    assert picture.read_bytes() == b"a second, different picture"
    assert share.requests(ANN) == []


def test_a_request_never_reaches_another_persons_folder_through_a_link(share: Share) -> None:
    bobs = share.picture(BOB, "secret.png")
    share.picture(ANN, "placeholder.png")
    outputs = share.users / ANN / "outputs"
    (outputs / "placeholder.png").unlink()
    outputs.rmdir()
    outputs.symlink_to(share.users / BOB / "outputs")  # ann's outputs is a link to bob's
    info = bobs.stat()
    deletion_requests.write(
        share.deletions, ANN, Deletion("secret.png", info.st_size, info.st_mtime_ns)
    )
    assert share.sweep() == 0
    assert bobs.exists()


def test_a_picture_that_is_a_link_is_not_followed_or_deleted(share: Share) -> None:
    bobs = share.picture(BOB, "secret.png")
    link = share.users / ANN / "outputs" / "mine.png"
    link.parent.mkdir(parents=True)
    link.symlink_to(bobs)
    share.ask(ANN, link)  # the link's own size and time
    assert share.sweep() == 0
    assert bobs.exists() and link.is_symlink()


HOSTILE = {
    "parent": b'{"name": "../../bob-example-com-fedcba9876543210/outputs/secret.png", '
    b'"size": 5, "modified_ns": 1}',
    "absolute": b'{"name": "/share/users/x.png", "size": 5, "modified_ns": 1}',
    "not json": b'{"name": ',
    "deep": b"[" * 50_000,
    "extra field": b'{"name": "a.png", "size": 5, "modified_ns": 1, "more": 1}',
    "negative size": b'{"name": "a.png", "size": -5, "modified_ns": 1}',
    "boolean size": b'{"name": "a.png", "size": true, "modified_ns": 1}',
}


@pytest.mark.parametrize("raw", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_bad_request_is_removed_and_deletes_nothing(share: Share, raw: bytes) -> None:
    bobs = share.picture(BOB, "secret.png")
    ann = share.picture(ANN, "a.png")
    folder = share.deletions / ANN
    folder.mkdir()
    (folder / ("0" * 40 + SUFFIX)).write_bytes(raw)
    assert share.sweep() == 0
    assert bobs.exists() and ann.exists()
    assert share.requests(ANN) == []


def test_a_request_filed_under_another_names_key_is_refused(share: Share) -> None:
    picture = share.picture(ANN, "a.png")
    info = picture.stat()
    raw = deletion_requests.encode(Deletion("a.png", info.st_size, info.st_mtime_ns))
    folder = share.deletions / ANN
    folder.mkdir()
    (folder / (key_of("b.png") + SUFFIX)).write_bytes(raw)
    assert share.sweep() == 0 and picture.exists()


def test_links_among_the_requests_are_not_followed(share: Share, tmp_path: Path) -> None:
    ann = share.picture(ANN, "a.png")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    info = ann.stat()
    raw = deletion_requests.encode(Deletion("a.png", info.st_size, info.st_mtime_ns))
    (elsewhere / (key_of("a.png") + SUFFIX)).write_bytes(raw)
    (share.deletions / ANN).symlink_to(elsewhere)  # a person's folder of requests is a link
    assert share.sweep() == 0 and ann.exists()
    os.unlink(share.deletions / ANN)
    (share.deletions / ANN).mkdir()
    (share.deletions / ANN / (key_of("a.png") + SUFFIX)).symlink_to(
        elsewhere / (key_of("a.png") + SUFFIX)
    )  # one request is a link
    assert share.sweep() == 0 and ann.exists()
    assert (elsewhere / (key_of("a.png") + SUFFIX)).exists(), "what a link points at stays"


def test_a_folder_of_requests_that_is_no_plain_name_is_skipped(share: Share) -> None:
    hidden = share.picture(".hidden", "a.png")
    share.ask(".hidden", hidden)
    assert share.sweep() == 0 and hidden.exists()
