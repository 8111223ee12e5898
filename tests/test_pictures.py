""" "My pictures": each person sees, downloads and deletes their own pictures and nothing else,
with or without a WebUI, and asking for them never allocates one.

The folder access (`allocator.pictures`) is fuzzed on its own; everything else goes through a
real server (uvicorn in this process, header identity, a recording backend that would say if
anything were allocated), with raw request lines so no client tidies a hostile path first.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import io
import os
import socket
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image
from playwright.sync_api import Browser, expect
from watchfiles import awatch

from allocator.identity import create_identity
from allocator.pictures import (
    NoSuchPicture,
    PersonFolder,
    PictureShelf,
    components,
    decode_cursor,
)
from allocator.runtime import Core, Runtime
from allocator.settings import Settings
from allocator.slugs import slug_for
from allocator.store import SessionStore
from tests.sidecar.processes import SidecarProcess
from tests.support.inprocess import InProcessAllocator, settings_for
from tests.support.processes import free_port, header_for
from tests.support.recording import RecordingBackend

ANN, BOB = "ann@example.com", "bob@example.com"
PNG = b"\x89PNG\r\n\x1a\n" + b"ann's picture" * 10
API = "/_allocator/api/pictures"
FILES = "/_allocator/pictures/file/"


def outputs_of(users_dir: Path, email: str) -> Path:
    folder = users_dir / slug_for(email) / "outputs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def put(folder: Path, name: str, data: bytes, modified: float) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (modified, modified))
    return path


class Site:
    """A started allocator, the recording backend behind it, and the users folder."""

    def __init__(self, tmp_path: Path, deletions_dir: Path | None = None) -> None:
        """`deletions_dir`: delete as behind Agones, by asking the pods' sidecars."""
        self.backend = RecordingBackend()
        self.users_dir = tmp_path / "users"
        config = settings_for(tmp_path, identity="header", backend="static",
                              static_target="127.0.0.1:1",
                              deletions_dir=deletions_dir)  # fmt: skip
        self.allocator = InProcessAllocator(config, self._runtime)

    def _runtime(self, config: Settings) -> Runtime:
        core = Core.from_parts(config, SessionStore.from_url("memory"), self.backend)
        return Runtime.from_parts(core, create_identity(config))

    @property
    def url(self) -> str:
        return self.allocator.url

    def client(self, email: str = ANN) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=header_for(email), timeout=30)

    def raw_status(self, target: bytes, email: str = ANN) -> int:
        """The status of `GET target` sent byte for byte (no client normalizes the path)."""
        identity = "".join(f"{k}: {v}\r\n" for k, v in header_for(email).items()).encode()
        request = (
            b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + identity
            + b"Connection: close\r\n\r\n"
        )  # fmt: skip
        with socket.create_connection(("127.0.0.1", self.allocator.port), timeout=30) as conn:
            conn.sendall(request)
            head = conn.recv(64)
        return int(head.split(b" ", 2)[1])


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    made = Site(tmp_path)
    with made.allocator:
        yield made


@pytest.fixture
def ann_outputs(site: Site) -> Path:
    folder = outputs_of(site.users_dir, ANN)
    put(folder, "old.png", PNG, 1_700_000_000)
    put(folder, "txt2img-images/2024-05-01/00001-1.png", PNG, 1_700_000_100)
    put(folder, "newest.jpg", b"\xff\xd8\xff jpeg", 1_700_000_200)
    put(folder, "drawing.svg", b"<svg onload='alert(1)'/>", 1_600_000_000)
    return folder


@pytest.fixture
def bob_outputs(site: Site) -> Path:
    folder = outputs_of(site.users_dir, BOB)
    put(folder, "secret.png", b"bob's", 1_700_000_000)
    return folder


# The listing


def test_pictures_are_listed_newest_first_with_their_size_time_and_address(
    site: Site, ann_outputs: Path
) -> None:
    with site.client() as http:
        listing = http.get(API).json()
    names = [picture["name"] for picture in listing["pictures"]]
    assert names == ["newest.jpg", "txt2img-images/2024-05-01/00001-1.png", "old.png",
                     "drawing.svg"]  # fmt: skip
    first = listing["pictures"][0]
    assert first == {
        "name": "newest.jpg",
        "size": len(b"\xff\xd8\xff jpeg"),
        "modified": 1_700_000_200.0,
        "url": "/_allocator/pictures/file/newest.jpg",
    }
    assert listing["next"] is None


def test_pages_follow_each_other_without_gaps_or_repeats(site: Site) -> None:
    folder = outputs_of(site.users_dir, ANN)
    for number in range(25):  # pairs share a time: the name decides between them
        put(folder, f"p{number:02}.png", PNG, 1_700_000_000 + number // 2)
    seen: list[str] = []
    cursor: str | None = None
    with site.client() as http:
        while True:
            params: dict[str, str | int] = {"limit": 7}
            if cursor:
                params["cursor"] = cursor
            page = http.get(API, params=params).json()
            seen += [picture["name"] for picture in page["pictures"]]
            cursor = page["next"]
            if cursor is None:
                break
    expected = sorted((f"p{n:02}.png" for n in range(25)), key=lambda n: (-(int(n[1:3]) // 2), n))
    assert seen == expected


def test_a_cursor_not_made_by_us_is_refused(site: Site, ann_outputs: Path) -> None:
    with site.client() as http:
        assert http.get(API, params={"cursor": "not a cursor"}).status_code == 400
        assert http.get(API, params={"limit": 0}).status_code == 422


def test_someone_with_no_folder_has_no_pictures(site: Site) -> None:
    with site.client() as http:
        assert http.get(API).json() == {"pictures": [], "next": None}
        page = http.get("/_allocator/pictures")
    assert page.status_code == 200
    assert 'id="none"' in page.text


def test_the_api_is_in_the_openapi_document(site: Site) -> None:
    with site.client() as http:
        paths = http.get("/_allocator/api/openapi.json").json()["paths"]
    assert "get" in paths["/_allocator/api/pictures"]
    assert "delete" in paths["/_allocator/api/pictures/{name}"]
    assert "get" in paths["/_allocator/pictures/file/{name}"]
    assert "get" in paths["/_allocator/pictures/download"]


# One picture


def test_a_picture_comes_with_its_type_and_headers_that_keep_it_inert(
    site: Site, ann_outputs: Path
) -> None:
    with site.client() as http:
        answer = http.get(FILES + "txt2img-images/2024-05-01/00001-1.png")
    assert answer.status_code == 200
    assert answer.content == PNG
    assert answer.headers["content-type"] == "image/png"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in answer.headers["content-security-policy"]
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["content-disposition"].startswith("inline")


def test_download_asks_the_browser_to_save(site: Site, ann_outputs: Path) -> None:
    with site.client() as http:
        answer = http.get(FILES + "newest.jpg", params={"download": "true"})
    assert answer.headers["content-type"] == "image/jpeg"
    assert answer.headers["content-disposition"].startswith('attachment; filename="newest.jpg"')


def test_an_svg_is_never_shown_inline(site: Site, ann_outputs: Path) -> None:
    with site.client() as http:
        answer = http.get(FILES + "drawing.svg")
    assert answer.headers["content-type"] == "application/octet-stream"
    assert answer.headers["content-disposition"].startswith("attachment")
    assert answer.headers["x-content-type-options"] == "nosniff"


# All of them


def test_download_all_is_one_zip_of_every_picture(site: Site, ann_outputs: Path) -> None:
    with site.client() as http:
        answer = http.get("/_allocator/pictures/download")
    assert answer.headers["content-type"] == "application/zip"
    assert answer.headers["content-disposition"] == 'attachment; filename="pictures.zip"'
    with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
        assert archive.testzip() is None
        assert sorted(archive.namelist()) == ["drawing.svg", "newest.jpg", "old.png",
                                              "txt2img-images/2024-05-01/00001-1.png"]  # fmt: skip
        assert archive.read("old.png") == PNG


def test_the_zip_is_written_in_pieces_not_all_at_once(tmp_path: Path) -> None:
    from allocator.pictures import CHUNK, zip_stream

    folder = outputs_of(tmp_path, ANN)
    for number in range(4):
        put(folder, f"big{number}.png", os.urandom(3 * CHUNK), 1_700_000_000 + number)
    person = PersonFolder(tmp_path, slug_for(ANN))
    chunks = list(zip_stream(person, person.scan()))
    assert max(len(chunk) for chunk in chunks) <= 2 * CHUNK
    with zipfile.ZipFile(io.BytesIO(b"".join(chunks))) as archive:
        assert archive.testzip() is None
        assert len(archive.namelist()) == 4


# Deleting


def test_delete_removes_the_picture_and_then_answers_404(site: Site, ann_outputs: Path) -> None:
    origin = {"Origin": site.url}
    with site.client() as http:
        assert http.delete(API + "/old.png", headers=origin).status_code == 204
        assert not (ann_outputs / "old.png").exists()
        assert http.delete(API + "/old.png", headers=origin).status_code == 404
        names = [picture["name"] for picture in http.get(API).json()["pictures"]]
    assert "old.png" not in names


def test_delete_needs_a_page_of_this_site(site: Site, ann_outputs: Path) -> None:
    with site.client() as http:
        assert http.delete(API + "/old.png").status_code == 403  # no Origin: no proof
        other = {"Origin": "https://evil.example"}
        assert http.delete(API + "/old.png", headers=other).status_code == 403
    assert (ann_outputs / "old.png").exists()


def test_the_page_deletes_with_a_form(site: Site, ann_outputs: Path) -> None:
    with site.client() as http:
        answer = http.post("/_allocator/pictures/delete", data={"name": "old.png"},
                           headers={"Origin": site.url})  # fmt: skip
    assert answer.status_code == 303
    assert not (ann_outputs / "old.png").exists()


def test_a_directory_cannot_be_deleted(site: Site, ann_outputs: Path) -> None:
    with site.client() as http:
        answer = http.delete(API + "/txt2img-images", headers={"Origin": site.url})
    assert answer.status_code == 404
    assert (ann_outputs / "txt2img-images").is_dir()


# With no WebUI


def test_pictures_need_no_webui_and_never_allocate_one(site: Site, ann_outputs: Path) -> None:
    with site.client() as http:
        page = http.get("/_allocator/pictures", headers={"Accept": "text/html"})
        assert page.status_code == 200
        assert 'src="/_allocator/pictures/file/newest.jpg"' in page.text
        assert 'loading="lazy"' in page.text
        assert http.get(API).status_code == 200
        assert http.get(FILES + "old.png").status_code == 200
        assert http.get("/_allocator/pictures/download").status_code == 200
    assert site.backend.allocated == []
    store = site.allocator.runtime.core.store
    assert site.allocator.call(store.get(ANN)) is None


def test_the_session_page_links_to_the_pictures(site: Site) -> None:
    with site.client() as http:
        home = http.get("/_allocator/", headers={"Accept": "text/html"})
    assert 'href="/_allocator/pictures"' in home.text


def test_pages_of_thumbnails_link_to_older_ones(site: Site) -> None:
    folder = outputs_of(site.users_dir, ANN)
    for number in range(70):
        put(folder, f"p{number:02}.png", PNG, 1_700_000_000 + number)
    with site.client() as http:
        first = http.get("/_allocator/pictures")
        assert first.text.count('loading="lazy"') == 60
        assert 'id="older"' in first.text
        older = first.text.split('id="older" href="', 1)[1].split('"', 1)[0]
        second = http.get(older.replace("&amp;", "&"))
    assert second.text.count('loading="lazy"') == 10
    assert 'id="older"' not in second.text


# Only one's own folder


def test_another_persons_picture_is_unreachable(
    site: Site, ann_outputs: Path, bob_outputs: Path
) -> None:
    with site.client(ANN) as http:
        assert http.get(FILES + "secret.png").status_code == 404
        assert all(p["name"] != "secret.png" for p in http.get(API).json()["pictures"])
        assert http.delete(API + "/secret.png", headers={"Origin": site.url}).status_code == 404
    assert (bob_outputs / "secret.png").exists()
    with site.client(BOB) as http:
        assert http.get(FILES + "secret.png").content == b"bob's"


TRAVERSALS = [
    b"../" + b"bob-example-com/outputs/secret.png",
    b"..%2f..%2f",
    b"%2e%2e/%2e%2e/{bob}/outputs/secret.png",
    b"%2e%2e%2f%2e%2e%2f{bob}%2foutputs%2fsecret.png",
    b"%252e%252e%252f%252e%252e%252f{bob}%252foutputs%252fsecret.png",
    b"../../{bob}/outputs/secret.png",
    b"txt2img-images/../../../{bob}/outputs/secret.png",
    b"./old.png",
    b"/etc/passwd",
    b"%2fetc%2fpasswd",
    b"{users}/{bob}/outputs/secret.png",
    b"..\\..\\{bob}\\outputs\\secret.png",
    b"..%5c..%5c{bob}%5coutputs%5csecret.png",
    b"old.png%00.txt",
    b"%2e%2e",
    b".hidden.png",
    b"",
]


@pytest.mark.parametrize("attempt", TRAVERSALS)
def test_no_path_leaves_the_persons_folder(
    site: Site, ann_outputs: Path, bob_outputs: Path, attempt: bytes
) -> None:
    put(ann_outputs, ".hidden.png", PNG, 1_700_000_000)
    target = attempt.replace(b"{bob}", slug_for(BOB).encode())
    target = target.replace(b"{users}", str(site.users_dir).lstrip("/").encode())
    assert site.raw_status(b"/_allocator/pictures/file/" + target) == 404


def test_a_nul_byte_in_the_request_never_reaches_a_file(site: Site, ann_outputs: Path) -> None:
    assert site.raw_status(b"/_allocator/pictures/file/old.png\x00") in (400, 404)


def test_links_inside_the_folder_are_neither_listed_nor_followed(
    site: Site, ann_outputs: Path, bob_outputs: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"outside the share")
    (ann_outputs / "bobs.png").symlink_to(bob_outputs / "secret.png")
    (ann_outputs / "bob").symlink_to(bob_outputs)
    (ann_outputs / "outside.png").symlink_to(outside)
    (ann_outputs / "root").symlink_to("/")
    with site.client() as http:
        names = {picture["name"] for picture in http.get(API).json()["pictures"]}
        for name in ("bobs.png", "bob/secret.png", "outside.png", "root/etc/passwd"):
            assert name not in names
            assert http.get(FILES + name).status_code == 404
        with zipfile.ZipFile(io.BytesIO(http.get("/_allocator/pictures/download").content)) as z:
            assert not {"bobs.png", "outside.png"} & set(z.namelist())


def test_an_outputs_folder_replaced_by_a_link_shows_nothing(site: Site, bob_outputs: Path) -> None:
    """A WebUI that owns the person's folder could swap `outputs` for a link to another's."""
    ann_home = site.users_dir / slug_for(ANN)
    ann_home.mkdir(parents=True)
    (ann_home / "outputs").symlink_to(bob_outputs)
    with site.client() as http:
        assert http.get(API).json()["pictures"] == []
        assert http.get(FILES + "secret.png").status_code == 404


def test_a_fifo_or_folder_named_like_a_picture_is_not_served(site: Site, ann_outputs: Path) -> None:
    os.mkfifo(ann_outputs / "pipe.png")
    (ann_outputs / "folder.png").mkdir()
    with site.client() as http:
        names = {picture["name"] for picture in http.get(API).json()["pictures"]}
        assert not {"pipe.png", "folder.png"} & names
        assert http.get(FILES + "pipe.png").status_code == 404
        assert http.get(FILES + "folder.png").status_code == 404
        assert http.get("/_allocator/pictures/download").status_code == 200


# The resolver, fuzzed


PIECES = st.sampled_from(["..", ".", "", "/", "\\", "\x00", "%2e", "a", "b.png", "~", "sub",
                          ".git", "..\\", "//", "outputs", "\n"])  # fmt: skip
NAMES = st.one_of(st.text(max_size=60), st.lists(PIECES, max_size=10).map("".join))


@pytest.fixture(scope="module")
def fuzz_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ann's folder with a picture and a sub-folder; bob's beside it; a file outside."""
    users = tmp_path_factory.mktemp("fuzz") / "users"
    ann = outputs_of(users, ANN)
    put(ann, "b.png", PNG, 1_700_000_000)
    put(ann, "sub/b.png", PNG, 1_700_000_000)
    put(outputs_of(users, BOB), "b.png", b"bob's", 1_700_000_000)
    (users.parent / "b.png").write_bytes(b"outside")
    (ann / "a").symlink_to(users.parent)
    return users


@settings(max_examples=600, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAMES)
@example(name="b.png")
@example(name="sub/b.png")
@example(name="a/b.png")
@example(name=f"../../{slug_for(BOB)}/outputs/b.png")
@example(name=f"sub/../../../{slug_for(BOB)}/outputs/b.png")
def test_any_name_opens_only_a_regular_file_inside_the_persons_folder(
    fuzz_tree: Path, name: str
) -> None:
    folder = PersonFolder(fuzz_tree, slug_for(ANN))
    parts = components(name)
    try:
        descriptor, _ = folder.open(name)
    except NoSuchPicture:
        assert name not in ("b.png", "sub/b.png")
        return
    try:
        assert parts is not None
        real = Path(os.readlink(f"/proc/self/fd/{descriptor}"))
        assert real.is_relative_to(fuzz_tree / slug_for(ANN) / "outputs")
        assert os.read(descriptor, len(PNG)) == PNG
        assert name in ("b.png", "sub/b.png")
    finally:
        os.close(descriptor)


@given(cursor=st.text(max_size=80))
def test_any_cursor_is_read_as_a_position_or_refused(cursor: str) -> None:
    position = decode_cursor(cursor)
    assert position is None or (isinstance(position[0], int) and isinstance(position[1], str))


def test_a_listing_is_reused_briefly_and_forgotten_after_a_delete(tmp_path: Path) -> None:
    folder = outputs_of(tmp_path, ANN)
    put(folder, "one.png", PNG, 1_700_000_000)
    shelf = PictureShelf(tmp_path, listing_ttl=3600)
    assert [p.name for p in shelf.listing(ANN)] == ["one.png"]
    put(folder, "two.png", PNG, 1_700_000_100)
    assert [p.name for p in shelf.listing(ANN)] == ["one.png"]  # kept
    shelf.delete(ANN, "one.png")
    assert [p.name for p in shelf.listing(ANN)] == ["two.png"]


def test_the_queue_page_links_to_the_pictures() -> None:
    from allocator import pages

    body = pages.render("progress.html", title="Waiting for a GPU", state="queued", position=2,
                        queue_length=3, message="", waited=None, refresh=None)  # fmt: skip
    assert b'href="/_allocator/pictures"' in body


def test_in_a_browser_the_page_shows_the_picture_itself(browser: Browser, site: Site) -> None:
    """What a person sees: the thumbnail's pixels arrived (not merely an <img> element), and
    full size opens the same picture."""
    folder = outputs_of(site.users_dir, ANN)
    pixels = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 80, 40)).save(pixels, format="PNG")
    put(folder, "sunset.png", pixels.getvalue(), 1_700_000_000)
    page = browser.new_context(extra_http_headers=header_for(ANN)).new_page()
    page.goto(f"{site.url}/_allocator/pictures")
    thumbnail = page.locator("#pictures img").first
    expect(thumbnail).to_be_visible()
    page.wait_for_function(
        "img => img.complete && img.naturalWidth === 32", arg=thumbnail.element_handle()
    )
    assert site.backend.allocated == []


def test_a_name_that_is_not_utf8_is_left_out_and_breaks_nothing(
    site: Site, ann_outputs: Path
) -> None:
    """A hostile WebUI's one badly named file must not take the listing, the page or the zip
    down with it."""
    os.close(os.open(os.fsencode(ann_outputs) + b"/bad\xff.png", os.O_CREAT | os.O_WRONLY))
    with site.client() as client:
        listed = client.get(API)
        assert listed.status_code == 200
        assert len(listed.json()["pictures"]) == 4  # the fixture's four, not the bad one
        assert client.get("/_allocator/pictures").status_code == 200
        archive = zipfile.ZipFile(io.BytesIO(client.get("/_allocator/pictures/download").content))
        assert len(archive.namelist()) == 4


def test_a_hard_link_is_neither_listed_nor_served(
    site: Site, ann_outputs: Path, bob_outputs: Path
) -> None:
    os.link(bob_outputs / "secret.png", ann_outputs / "linked.png")
    with site.client() as client:
        names = [p["name"] for p in client.get(API).json()["pictures"]]
        assert "linked.png" not in names
        assert client.get(f"{FILES}linked.png").status_code == 404


def test_a_time_zip_cannot_say_still_makes_a_whole_zip(site: Site, ann_outputs: Path) -> None:
    put(ann_outputs, "future.png", PNG, 2**40)
    with site.client() as client:
        archive = zipfile.ZipFile(io.BytesIO(client.get("/_allocator/pictures/download").content))
        assert archive.testzip() is None and "future.png" in archive.namelist()


def test_a_cursor_nested_too_deep_is_a_bad_request_not_an_error(site: Site) -> None:
    deep = base64.urlsafe_b64encode(b"[" * 5000).decode()
    with site.client() as client:
        assert client.get(API, params={"cursor": deep}).status_code == 400


def test_where_the_folders_are_read_only_delete_says_so(
    site: Site, ann_outputs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind Agones the allocator mounts users/ read-only: a clear 409, not a 404."""

    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "unlink", read_only)
    with site.client() as client:
        answer = client.delete(f"{API}/old.png", headers={"Origin": site.url})
    assert answer.status_code == 409 and "read-only" in answer.json()["message"]
    assert (ann_outputs / "old.png").exists()


# Deleting behind Agones: the allocator asks the pods' sidecars (sidecar.deletion_requests)


@pytest.fixture
def agones_site(tmp_path: Path) -> Iterator[Site]:
    (tmp_path / "deletions").mkdir()
    made = Site(tmp_path, deletions_dir=tmp_path / "deletions")
    with made.allocator:
        yield made


def test_behind_agones_a_deleted_picture_is_gone_for_the_person_at_once(
    agones_site: Site,
) -> None:
    site = agones_site
    folder = outputs_of(site.users_dir, ANN)
    put(folder, "old.png", PNG, 1_700_000_000)
    put(folder, "kept.png", PNG, 1_700_000_100)
    origin = {"Origin": site.url}
    with site.client() as http:
        assert http.delete(API + "/old.png", headers=origin).status_code == 204
        assert (folder / "old.png").exists(), "only a sidecar deletes here"
        names = [picture["name"] for picture in http.get(API).json()["pictures"]]
        assert names == ["kept.png"]
        assert http.get(FILES + "old.png").status_code == 404
        assert http.delete(API + "/old.png", headers=origin).status_code == 404
        with zipfile.ZipFile(io.BytesIO(http.get("/_allocator/pictures/download").content)) as z:
            assert z.namelist() == ["kept.png"]
        assert "Delete" in http.get("/_allocator/pictures").text
    put(folder, "old.png", b"a new picture of the same name", 1_700_000_200)
    with site.client() as http:
        assert http.get(FILES + "old.png").content == b"a new picture of the same name"


def test_behind_agones_a_name_no_sidecar_would_delete_gets_a_clear_409(
    agones_site: Site,
) -> None:
    folder = outputs_of(agones_site.users_dir, ANN)
    name = "/".join(["f" * 200] * 6) + "/long.png"  # listed (under 4096), over 1024 bytes
    put(folder, name, PNG, 1_700_000_000)
    with agones_site.client() as http:
        assert [p["name"] for p in http.get(API).json()["pictures"]] == [name]
        answer = http.delete(f"{API}/{name}", headers={"Origin": agones_site.url})
    assert answer.status_code == 409 and "operator" in answer.json()["message"]


def test_behind_agones_deleting_when_requests_cannot_be_written_says_so(
    agones_site: Site, tmp_path: Path
) -> None:
    folder = outputs_of(agones_site.users_dir, ANN)
    put(folder, "old.png", PNG, 1_700_000_000)
    (tmp_path / "deletions").rmdir()  # the share's deletions/ is not mounted
    with agones_site.client() as http:
        answer = http.delete(API + "/old.png", headers={"Origin": agones_site.url})
        assert answer.status_code == 503 and "try again" in answer.json()["message"]
        assert [p["name"] for p in http.get(API).json()["pictures"]] == ["old.png"]
        assert "Delete" not in http.get("/_allocator/pictures").text, "no button that fails"


async def test_behind_agones_a_sidecar_deletes_the_picture_the_person_deleted(
    agones_site: Site, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The allocator and a real sidecar process (as in any pod, owned or not) share the share."""
    folder = outputs_of(agones_site.users_dir, ANN)
    picture = put(folder, "txt2img-images/00001-1.png", PNG, 1_700_000_000)
    pod = tmp_path_factory.mktemp("pod")  # its own folders lie outside the share
    (pod / "outputs").mkdir()
    sidecar = SidecarProcess(
        pod / "sidecar.log",
        AGONES_SDK_HTTP_PORT=str(free_port()),  # no SDK server: it deletes all the same
        WEBUI_URL=f"http://127.0.0.1:{free_port()}",
        SHARE_DIR=str(tmp_path),
        OUTPUTS_DIR=str(pod / "outputs"),
        STATE_DIR=str(pod / "state"),
        DELETIONS_PERIOD_SECONDS="0.05",
    ).start()
    try:
        async with httpx.AsyncClient(base_url=agones_site.url, headers=header_for(ANN)) as http:
            answer = await http.delete(
                API + "/txt2img-images/00001-1.png", headers={"Origin": agones_site.url}
            )
        assert answer.status_code == 204
        async with asyncio.timeout(30):
            async for _ in awatch(folder, yield_on_timeout=True, rust_timeout=1000):
                if not picture.exists():
                    break
                assert sidecar.running(), sidecar.log()
        assert "as they asked" in sidecar.log()
    finally:
        sidecar.stop()
    with agones_site.client() as http:  # the request stays a while: still hidden meanwhile
        assert http.get(API).json()["pictures"] == []
