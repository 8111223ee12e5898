"""Delivery: every finished file reaches the owner's folder whole, once, under a name of its own,
and nothing the WebUI plants there reaches anyone else's."""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar import main
from sidecar.copying import PART_PREFIX, part_name
from sidecar.delivery import Delivery, Limits
from sidecar.finished import FinishedFiles
from sidecar.journal import Journal
from sidecar.names import UnsafeName, check_parts, numbered
from sidecar.outputs import prepare_folders
from sidecar.settings import Settings

LIMITS = Limits(max_file_bytes=1000, max_files=100)


class Pod:
    """A pod's folders: the WebUI's outputs, the sidecar's state, the share."""

    def __init__(self, base: Path, limits: Limits = LIMITS) -> None:
        self.outputs = base / "workspace" / "outputs"
        self.outputs.mkdir(parents=True)
        self.state = base / "state"
        self.share = base / "share"
        self.limits = limits
        self.journal = Journal(self.state).load()
        self.delivery = Delivery(self.outputs, self.journal, limits)

    def give_to(self, slug: str) -> Path:
        root = prepare_folders(self.share, slug).root
        self.delivery.deliver_to(root)
        return root

    def passes(self, count: int = 2) -> None:
        """A file is finished when two looks agree: two passes deliver what is there now."""
        for _ in range(count):
            self.delivery.one_pass()

    def write(self, relative: str, data: bytes) -> Path:
        path = self.outputs / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def restarted(self) -> Pod:
        """The same folders with a new sidecar process (its memory gone, its journal kept)."""
        again = object.__new__(Pod)
        again.__dict__.update(self.__dict__)
        again.journal = Journal(self.state).load()
        again.delivery = Delivery(self.outputs, again.journal, self.limits)
        return again


def files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path, links not followed."""
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink():
                found[str(path.relative_to(root))] = path.read_bytes()
    return found


@pytest.fixture
def pod(tmp_path: Path) -> Pod:
    return Pod(tmp_path)


@pytest.fixture
def caplog_info(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.INFO, logger="sidecar"):
        yield caplog


def test_files_saved_before_the_pod_has_an_owner_are_held_then_delivered(pod: Pod) -> None:
    pod.write("txt2img-images/00001-1.png", b"early")
    pod.passes()
    assert not pod.share.exists()

    alice = pod.give_to("alice")
    pod.passes(1)  # already finished: the first pass with an owner delivers it
    assert files(alice) == {"txt2img-images/00001-1.png": b"early"}


def test_the_webuis_sub_folders_are_kept_and_made_group_only(pod: Pod) -> None:
    alice = pod.give_to("alice")
    pod.write("txt2img-images/2024-05-01/00002-2.png", b"dated")
    pod.write("img2img-grids/grid.jpg", b"grid")
    pod.passes()
    assert files(alice) == {
        "txt2img-images/2024-05-01/00002-2.png": b"dated",
        "img2img-grids/grid.jpg": b"grid",
    }
    made = alice / "txt2img-images" / "2024-05-01"
    assert stat.S_IMODE(made.stat().st_mode) == 0o770
    assert stat.S_IMODE((made / "00002-2.png").stat().st_mode) == 0o660


def test_a_file_still_being_written_waits_for_two_looks_that_agree(pod: Pod) -> None:
    alice = pod.give_to("alice")
    picture = pod.write("saved/x.png", b"half")
    pod.passes(1)
    with picture.open("ab") as more:
        more.write(b" and the rest")
    pod.passes(1)
    assert files(alice) == {}
    pod.passes(1)
    assert files(alice) == {"saved/x.png": b"half and the rest"}


def test_a_different_file_of_the_same_name_gets_a_new_name(pod: Pod) -> None:
    alice = pod.give_to("alice")
    (alice / "saved" / "x.png").write_bytes(b"from an earlier pod")
    (alice / "saved" / "x (2).png").write_bytes(b"also earlier")
    pod.write("saved/x.png", b"new")
    pod.passes()
    assert files(alice / "saved") == {
        "x.png": b"from an earlier pod",
        "x (2).png": b"also earlier",
        "x (3).png": b"new",
    }


def test_the_same_file_is_delivered_once_even_by_a_restarted_sidecar(pod: Pod) -> None:
    alice = pod.give_to("alice")
    pod.write("saved/x.png", b"once")
    pod.passes()
    pod.passes()
    again = pod.restarted()
    again.give_to("alice")
    again.passes()
    (pod.state / "delivered.jsonl").unlink()  # even with the journal lost: same bytes, no copy
    third = pod.restarted()
    third.give_to("alice")
    third.passes()
    assert files(alice) == {"saved/x.png": b"once"}


def test_a_rewritten_file_is_delivered_again_beside_the_first(pod: Pod) -> None:
    alice = pod.give_to("alice")
    picture = pod.write("saved/x.png", b"first")
    pod.passes()
    picture.write_bytes(b"second version")
    pod.passes()
    assert files(alice / "saved") == {"x.png": b"first", "x (2).png": b"second version"}


def test_a_link_to_someone_elses_folder_delivers_nothing(pod: Pod) -> None:
    bob = prepare_folders(pod.share, "bob").root
    (bob / "saved" / "secret.png").write_bytes(b"bob's")
    alice = pod.give_to("alice")
    (pod.outputs / "saved").mkdir()
    (pod.outputs / "saved" / "stolen.png").symlink_to(bob / "saved" / "secret.png")
    (pod.outputs / "bobs-folder").symlink_to(bob)
    (pod.outputs / "etc").symlink_to("/etc")
    pod.write("saved/mine.png", b"mine")
    pod.passes()
    assert files(alice) == {"saved/mine.png": b"mine"}


def test_fifos_sockets_and_devices_are_passed_over(pod: Pod) -> None:
    alice = pod.give_to("alice")
    (pod.outputs / "saved").mkdir()
    os.mkfifo(pod.outputs / "saved" / "fifo.png")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(pod.outputs / "saved" / "socket.png"))
    if os.geteuid() == 0:
        os.mknod(pod.outputs / "saved" / "null.png", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    pod.write("saved/mine.png", b"mine")
    try:
        pod.passes()
    finally:
        server.close()
    assert files(alice) == {"saved/mine.png": b"mine"}


def test_dot_names_are_never_delivered(pod: Pod) -> None:
    alice = pod.give_to("alice")
    pod.write(".hidden/x.png", b"x")
    pod.write(f"saved/{PART_PREFIX}x", b"x")
    pod.write("saved/.x.png", b"x")
    pod.passes()
    assert files(alice) == {}


def test_a_planted_link_in_the_persons_folder_is_not_written_through(
    pod: Pod, tmp_path: Path
) -> None:
    alice = pod.give_to("alice")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (alice / "extras-images").rmdir()
    (alice / "extras-images").symlink_to(elsewhere)
    (alice / "saved" / "x.png").symlink_to(elsewhere / "x.png")
    pod.write("extras-images/a.png", b"a")
    pod.write("saved/x.png", b"x")
    pod.passes()
    assert list(elsewhere.iterdir()) == []
    assert (alice / "saved" / "x (2).png").read_bytes() == b"x"


def test_too_big_and_too_many_are_logged_and_the_rest_goes_on(
    tmp_path: Path, caplog_info: pytest.LogCaptureFixture
) -> None:
    pod = Pod(tmp_path, Limits(max_file_bytes=10, max_files=2))
    alice = pod.give_to("alice")
    pod.write("saved/big.png", b"x" * 11)
    pod.write("saved/a.png", b"a")
    pod.passes()
    pod.write("saved/b.png", b"b")
    pod.passes()
    pod.write("saved/c.png", b"c")
    pod.passes()
    assert files(alice) == {"saved/a.png": b"a", "saved/b.png": b"b"}
    text = caplog_info.text
    assert text.count("11 bytes, over MAX_FILE_BYTES=10") == 1
    assert text.count("MAX_FILES=2 files delivered in this session") == 1


def test_a_numbered_name_obeys_the_path_bound_too(
    pod: Pod, caplog_info: pytest.LogCaptureFixture
) -> None:
    """`name (2).png` may not make a path longer than any delivered: "My pictures" could list it
    but, behind Agones, never have it deleted."""
    alice = pod.give_to("alice")
    relative = "/".join(["saved", *["d" * 200] * 4, "n" * 207 + ".png"])  # 1022 bytes
    pod.write(relative, b"first")
    pod.passes()
    pod.write(relative, b"second, different")
    pod.passes()
    assert files(alice) == {relative: b"first"}
    assert "too long" in caplog_info.text


def test_the_bytes_of_a_session_are_bounded_too(
    tmp_path: Path, caplog_info: pytest.LogCaptureFixture
) -> None:
    """A sparse 256 MiB file costs 256 MiB on the share once copied: files times size is no
    bound, so the session's bytes are one."""
    pod = Pod(tmp_path, Limits(max_file_bytes=100, max_files=100, max_session_bytes=15))
    alice = pod.give_to("alice")
    pod.write("saved/a.png", b"a" * 10)
    pod.passes()
    pod.write("saved/b.png", b"b" * 10)
    pod.write("saved/c.png", b"c" * 5)
    pod.passes()
    delivered = files(alice)
    assert delivered["saved/a.png"] == b"a" * 10 and "saved/b.png" not in delivered
    assert sum(map(len, delivered.values())) <= 15
    assert caplog_info.text.count("MAX_SESSION_BYTES=15 bytes delivered in this session") == 1
    assert pod.restarted().journal.delivered_bytes == sum(map(len, delivered.values()))


def test_a_look_takes_in_a_bounded_number_of_files(
    tmp_path: Path, caplog_info: pytest.LogCaptureFixture
) -> None:
    outputs = tmp_path / "outputs"
    for number in range(5):
        (outputs / f"folder-{number}").mkdir(parents=True)
        (outputs / f"folder-{number}" / "x.png").write_bytes(b"x")
    seen = FinishedFiles(str(outputs), max_seen=3)
    for _ in range(3):
        finished, changing = seen.look()
        assert len(finished) + len(changing) == 3
    assert caplog_info.text.count("holds 3 files or more") == 1


def test_a_file_rewritten_forever_is_not_remembered_forever(tmp_path: Path) -> None:
    pod = Pod(tmp_path, Limits(max_file_bytes=10, max_files=100))
    pod.give_to("alice")
    for size in range(11, 31):  # each version too big, each refused once
        pod.write("saved/big.png", b"x" * size)
        pod.passes()
    assert len(pod.delivery._refused) <= 1
    pod.write("saved/big.png", b"fits")
    pod.passes()
    assert pod.delivery._refused == set()


def test_part_files_of_a_killed_copy_are_removed_and_never_look_like_pictures(pod: Pod) -> None:
    alice = prepare_folders(pod.share, "alice").root
    left = alice / "saved" / part_name()
    left.write_bytes(b"half a pic")
    someone_elses = alice / "saved" / f"{PART_PREFIX}other-pod-0123"
    someone_elses.write_bytes(b"copy under way")
    assert left.name.startswith(".")
    pod.give_to("alice")
    pod.passes()
    assert not left.exists(), "this pod's own leftovers go at once"
    assert someone_elses.exists(), "another pod of the same person may be copying it now"


def test_a_conflict_stops_delivery_for_good(pod: Pod) -> None:
    alice = pod.give_to("alice")
    pod.delivery.close()
    pod.delivery.deliver_to(alice)
    pod.write("saved/x.png", b"x")
    pod.passes()
    assert files(alice) == {}


@pytest.mark.parametrize(
    "parts",
    [(), ("..",), (".",), ("",), ("a/b",), ("a\x00",), (".sda-part-1",), ("a", "..", "b"),
     ("x" * 256,), ("d",) * 20, ("a\\b.png",), ("a\nb.png",), ("bad\udcff.png",),
     ("picture.png.tmp",), ("x" * 200,) * 6],
)  # fmt: skip
def test_names_that_could_escape_are_refused(parts: tuple[str, ...]) -> None:
    with pytest.raises(UnsafeName):
        check_parts(parts)


def test_numbered_names() -> None:
    assert numbered("a.png", 1) == "a.png"
    assert numbered("a.b.png", 2) == "a.b (2).png"
    assert numbered("README", 3) == "README (3)"


def test_a_torn_journal_line_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "delivered.jsonl").write_text(
        '{"path": "a.png", "size": 1, "mtime_ns": 2, "to": "a.png"}\n{"path": "b.p'
    )
    journal = Journal(tmp_path).load()
    assert journal.delivered == {("a.png", 1, 2): "a.png"}


async def test_a_file_that_fails_to_deliver_is_retried_and_reported_at_shutdown(
    pod: Pod, monkeypatch: pytest.MonkeyPatch, caplog_info: pytest.LogCaptureFixture
) -> None:
    """A full share, say: the drain keeps trying, and says the file was not delivered."""

    def share_full(*args: object) -> str:
        raise OSError(errno.ENOSPC, "No space left on device")

    pod.give_to("ann")
    pod.write("a.png", b"picture")
    pod.passes(1)
    monkeypatch.setattr("sidecar.delivery.deliver", share_full)
    await pod.delivery.drain(poll_seconds=0.01, within=0.1)
    assert "1 file(s) not delivered" in caplog_info.text
    assert "every finished file is delivered" not in caplog_info.text


async def test_a_failure_while_serving_still_delivers_what_is_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever ends the sidecar, what the WebUI saved is delivered before it exits."""
    drained: list[float] = []

    async def broken(*args: object) -> None:
        raise RuntimeError("the share went away")

    async def drain(self: Delivery, poll_seconds: float, within: float) -> None:
        drained.append(within)

    monkeypatch.setattr(main, "serve", broken)
    monkeypatch.setattr(Delivery, "drain", drain)
    folders = {"OUTPUTS_DIR": str(tmp_path / "outputs"), "STATE_DIR": str(tmp_path / "state")}
    settings = Settings.from_env(folders)
    with pytest.raises(RuntimeError):
        await main.run(settings, Journal(tmp_path / "state").load())
    assert drained == [settings.drain_timeout]
