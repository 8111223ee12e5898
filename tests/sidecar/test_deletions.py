"""Requests to delete a picture (from "My pictures" behind Agones) carried out by a sidecar.

`Deletions.sweep` runs here directly on real folders: every request is read as hostile, and
only the very file asked for, reached without following a link, inside the person's own
outputs folder, is ever deleted. Time passing is given to `sweep` as `now`, never waited for.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sidecar import deletion_requests
from sidecar.deletion_requests import Deletion, file_name
from sidecar.deletions import KEEP_DONE, KEEP_FAILING, Deletions

ANN, BOB = "ann-example-com-0123456789abcdef", "bob-example-com-fedcba9876543210"


def later() -> float:
    """A moment past the time a done request is kept, from now (not from the collection)."""
    return time.time() + KEEP_DONE + 60


class Share:
    def __init__(self, root: Path) -> None:
        self.users = root / "users"
        self.deletions = root / "deletions"
        self.deletions.mkdir(parents=True)
        self.sidecar = Deletions(self.users, self.deletions)

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

    def requests(self) -> list[str]:
        return sorted(path.name for path in self.deletions.iterdir())

    def sweep(self, now: float | None = None) -> int:
        return self.sidecar.sweep(now)


@pytest.fixture
def share(tmp_path: Path) -> Share:
    return Share(tmp_path)


def test_the_picture_asked_for_is_deleted_and_the_request_goes_minutes_later(
    share: Share,
) -> None:
    picture = share.picture(ANN, "txt2img-images/2026-12-05/00001-1.png")
    kept = share.picture(ANN, "txt2img-images/2026-12-05/00002-2.png")
    share.ask(ANN, picture)
    share.ask(ANN, picture)  # asked twice: one request
    request = file_name(ANN, "txt2img-images/2026-12-05/00001-1.png")
    assert share.requests() == [request]

    assert share.sweep() == 1
    assert not picture.exists() and kept.exists()
    assert share.requests() == [request], "kept a while: the allocator's view may lag"
    another = Deletions(share.users, share.deletions)  # another pod's sidecar
    assert another.sweep() == 0, "nothing left to do"
    assert share.sweep(later()) == 0
    assert share.requests() == []


def test_a_later_picture_with_the_same_name_is_not_deleted(share: Share) -> None:
    picture = share.picture(ANN, "a.png", b"the first")
    share.ask(ANN, picture)
    picture.unlink()
    share.picture(ANN, "a.png", b"a second, different picture")
    assert share.sweep() == 0
    assert picture.read_bytes() == b"a second, different picture"


def test_a_request_written_again_meanwhile_is_carried_out_not_dropped(share: Share) -> None:
    first = share.picture(ANN, "a.png", b"the first")
    share.ask(ANN, first)
    assert share.sweep() == 1
    second = share.picture(ANN, "a.png", b"a second picture of the same name")
    share.ask(ANN, second)  # the same request file's name, a new file
    assert share.sweep(later()) == 1
    assert not second.exists()


def test_a_request_never_reaches_another_persons_folder_through_a_link(share: Share) -> None:
    bobs = share.picture(BOB, "secret.png")
    (share.users / ANN).mkdir()
    (share.users / ANN / "outputs").symlink_to(share.users / BOB / "outputs")
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
    "deep": b"[" * 5000,  # under the size bound: json's own recursion limit
    "extra field": b'{"name": "a.png", "size": 5, "modified_ns": 1, "more": 1}',
    "negative size": b'{"name": "a.png", "size": -5, "modified_ns": 1}',
    "boolean size": b'{"name": "a.png", "size": true, "modified_ns": 1}',
}


@pytest.mark.parametrize("raw", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_bad_request_is_removed_at_once_and_deletes_nothing(share: Share, raw: bytes) -> None:
    bobs = share.picture(BOB, "secret.png")
    ann = share.picture(ANN, "a.png")
    (share.deletions / file_name(ANN, "a.png")).write_bytes(raw)
    assert share.sweep() == 0
    assert bobs.exists() and ann.exists()
    assert share.requests() == []


def test_a_request_filed_under_another_names_key_is_refused(share: Share) -> None:
    picture = share.picture(ANN, "a.png")
    info = picture.stat()
    raw = deletion_requests.encode(Deletion("a.png", info.st_size, info.st_mtime_ns))
    (share.deletions / file_name(ANN, "b.png")).write_bytes(raw)
    assert share.sweep() == 0 and picture.exists()


def test_a_request_that_is_a_link_is_not_followed(share: Share, tmp_path: Path) -> None:
    ann = share.picture(ANN, "a.png")
    info = ann.stat()
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_bytes(
        deletion_requests.encode(Deletion("a.png", info.st_size, info.st_mtime_ns))
    )
    (share.deletions / file_name(ANN, "a.png")).symlink_to(elsewhere)
    assert share.sweep() == 0 and ann.exists()
    assert elsewhere.exists(), "what a link points at stays"
    assert share.requests() == []


def test_one_bad_entry_stops_no_other_request(share: Share) -> None:
    (share.deletions / file_name(BOB, "x.png")).mkdir()  # a folder named like a request
    picture = share.picture(ANN, "a.png")
    share.ask(ANN, picture)
    assert share.sweep() == 1 and not picture.exists()
    assert share.sweep() == 0  # the folder is not read again and again


def unlink_failing_for(name: str, code: int) -> Callable[..., None]:
    """`os.unlink`, but failing with ``code`` for ``name`` (the share failing under it)."""
    real_unlink = os.unlink

    def unlink(path: str, *, dir_fd: int | None = None) -> None:
        if path == name:
            raise OSError(code, os.strerror(code))
        real_unlink(path, dir_fd=dir_fd)

    return unlink


def test_a_share_that_fails_keeps_the_request_for_the_next_look(
    share: Share, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    picture = share.picture(ANN, "a.png")
    share.ask(ANN, picture)
    monkeypatch.setattr(os, "unlink", unlink_failing_for("a.png", errno.EIO))
    assert share.sweep() == 0 and share.sweep() == 0
    assert picture.exists() and share.requests() == [file_name(ANN, "a.png")]
    assert caplog.text.count("could not delete") == 1, "one line per failure and file"
    monkeypatch.undo()
    assert share.sweep() == 1 and not picture.exists()


def test_a_request_failing_for_a_day_is_given_up(
    share: Share, monkeypatch: pytest.MonkeyPatch
) -> None:
    picture = share.picture(ANN, "a.png")
    share.ask(ANN, picture)
    monkeypatch.setattr(os, "unlink", unlink_failing_for("a.png", errno.EACCES))
    assert share.sweep(time.time() + KEEP_FAILING + 60) == 0
    assert share.requests() == [] and picture.exists()


def test_names_that_are_no_requests_are_left_alone(share: Share) -> None:
    hidden = share.picture(ANN, "a.png")
    info = hidden.stat()
    raw = deletion_requests.encode(Deletion("a.png", info.st_size, info.st_mtime_ns))
    for stray in (".draft-0123", f".{file_name(ANN, 'a.png')}", "notes.txt", "x.json"):
        (share.deletions / stray).write_bytes(raw)
    assert share.sweep(later()) == 0 and hidden.exists()
    assert len(share.requests()) == 4


def test_a_request_that_cannot_be_read_now_is_kept_for_the_next_look(
    share: Share, monkeypatch: pytest.MonkeyPatch
) -> None:
    picture = share.picture(ANN, "a.png")
    share.ask(ANN, picture)
    real_open = os.open

    def failing(path: str, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if str(path).endswith(".json"):
            raise OSError(errno.EIO, "Input/output error")
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", failing)
    assert share.sweep() == 0
    monkeypatch.undo()
    assert share.requests() == [file_name(ANN, "a.png")] and picture.exists()
    assert share.sweep() == 1 and not picture.exists()
