""" "My pictures": the person's own outputs, with or without a WebUI (never allocates).

Routes only: the folder access is `allocator.pictures`. Every file is served as hostile
content: a fixed list of image types shown inline, everything else (SVG too) as a download;
always `nosniff` and a sandboxing CSP, so nothing in a file can run as this site.
"""

# No `from __future__ import annotations`: FastAPI must resolve the route functions'
# annotations, and `CurrentPerson` is local to `add_picture_routes`.
import asyncio
import concurrent.futures
import logging
import os
from collections.abc import Callable
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

from fastapi import Depends, FastAPI, Form, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from allocator import pages
from allocator.checks import CROSS_SITE, NO_PROOF, same_site
from allocator.pictures import (
    NoSuchPicture,
    Page,
    Picture,
    PictureShelf,
    ReadOnly,
    Undeletable,
    read_chunks,
    zip_stream,
)
from allocator.runtime import Runtime
from allocator.types import Person

T = TypeVar("T")
log = logging.getLogger(__name__)

PREFIX = "/_allocator"
FILE_PATH = f"{PREFIX}/pictures/file/"
DEFAULT_LIMIT, MAX_LIMIT, PAGE_SIZE = 100, 1000, 60
IMAGE_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
}
ZIP_DISPOSITION = 'attachment; filename="pictures.zip"'
FILE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; sandbox",
    "Cross-Origin-Resource-Policy": "same-origin",
    # Names repeat (grid-0000.png every day, another person after a sign-out): ask each time.
    "Cache-Control": "private, no-cache",
}
ZIP_HEADERS = {**FILE_HEADERS, "Cache-Control": "no-store"}
UNDELETABLE = (
    "This picture's name is longer than what can be deleted here. Please ask an operator to "
    "remove it."
)
NOT_NOW = "Your picture could not be deleted just now. Please try again in a minute."
READ_ONLY = (
    "Pictures cannot be deleted here: this allocator reads everyone's folders read-only "
    "(only the WebUI pods' sidecars write them)."
)
# Folder work (NFS behind Agones) in its own few threads: never the pool the proxy uses.
_files = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="pictures")


async def _in_thread(function: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(_files, function, *args)


class PictureEntry(BaseModel):
    name: str  # relative to the person's outputs folder
    size: int  # bytes
    modified: float  # epoch seconds
    url: str


class PictureList(BaseModel):
    pictures: list[PictureEntry]
    next: str | None  # pass as `cursor` for the page after; null on the last page


def picture_url(name: str) -> str:
    return FILE_PATH + quote(name, safe="/")


def media_type(name: str) -> str | None:
    """The content type shown inline, None for anything else (served as a download)."""
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return IMAGE_TYPES.get(extension)


def _entry(picture: Picture) -> PictureEntry:
    return PictureEntry(
        name=picture.name,
        size=picture.size,
        modified=picture.modified,
        url=picture_url(picture.name),
    )


def _check_origin(request: Request) -> None:
    """The same rule as the control app's forms: a page of this site must have sent it."""
    verdict = same_site(request.scope)
    if not verdict:
        raise HTTPException(403, CROSS_SITE if verdict is False else NO_PROOF)


def _disposition(kind: str, name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    fallback = "".join(c if (c.isascii() and c.isalnum()) or c in "._-" else "_" for c in base)
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(base, safe='')}"


def file_response(shelf: PictureShelf, person: Person, name: str, download: bool) -> Response:
    try:
        descriptor, info = shelf.open(person.email, name)
    except NoSuchPicture:
        raise HTTPException(404) from None
    shown = media_type(name)
    kind = "attachment" if download or shown is None else "inline"
    headers = {
        **FILE_HEADERS,
        "Content-Length": str(info.st_size),
        "Content-Disposition": _disposition(kind, name),
    }
    return StreamingResponse(
        read_chunks(os.fdopen(descriptor, "rb"), info.st_size),
        media_type=shown or "application/octet-stream",
        headers=headers,
    )


async def _delete(shelf: PictureShelf, person: Person, name: str) -> None:
    try:
        await _in_thread(shelf.delete, person.email, name)
    except NoSuchPicture:
        raise HTTPException(404) from None
    except ReadOnly:
        raise HTTPException(409, READ_ONLY) from None
    except Undeletable:
        raise HTTPException(409, UNDELETABLE) from None
    except OSError as error:  # the deletion requests' folder (behind Agones) is not usable
        log.error("could not ask for the deletion of a picture of %s: %s", person.email, error)
        raise HTTPException(503, NOT_NOW) from None


async def _page_of(shelf: PictureShelf, person: Person, limit: int, cursor: str | None) -> Page:
    try:
        return await _in_thread(shelf.page, person.email, limit, cursor)
    except ValueError:
        raise HTTPException(400, "That page link is not valid any more.") from None


def add_picture_routes(app: FastAPI, runtime: Runtime, person_dependency: Any) -> None:
    """The "My pictures" page and API, reading `settings.users_dir`."""
    settings = runtime.settings
    shelf = PictureShelf(settings.users_dir, deletions_dir=settings.deletions_dir)
    CurrentPerson = Annotated[Person, Depends(person_dependency)]

    @app.get(f"{PREFIX}/api/pictures", response_model=PictureList, tags=["pictures"])
    async def list_pictures(
        person: CurrentPerson,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
        cursor: Annotated[str | None, Query(max_length=MAX_LIMIT * 8)] = None,
    ) -> PictureList:
        """My pictures, newest first, a page at a time (`next` is the cursor of the next)."""
        found = await _page_of(shelf, person, limit, cursor)
        return PictureList(pictures=[_entry(p) for p in found.pictures], next=found.next)

    @app.delete(f"{PREFIX}/api/pictures/{{name:path}}", status_code=204, tags=["pictures"])
    async def delete_picture(request: Request, name: str, person: CurrentPerson) -> Response:
        """Delete one of my pictures (404 when there is no such picture). Behind Agones this
        asks the WebUI pods' sidecars to delete it: it is gone from my pictures at once, from
        the share within seconds while any WebUI pod runs; 503 when it cannot be asked now."""
        _check_origin(request)
        await _delete(shelf, person, name)
        return Response(status_code=204)

    @app.get(f"{PREFIX}/pictures/file/{{name:path}}", tags=["pictures"])
    async def picture_file(name: str, person: CurrentPerson, download: bool = False) -> Response:
        """One of my pictures; `download=true` asks the browser to save it."""
        return await _in_thread(file_response, shelf, person, name, download)

    @app.get(f"{PREFIX}/pictures/download", tags=["pictures"])
    async def download_all(person: CurrentPerson) -> Response:
        """All my pictures as one zip, streamed."""
        pictures = await _in_thread(shelf.listing, person.email)
        folder = shelf.folder(person.email)
        return StreamingResponse(
            zip_stream(folder, pictures),
            media_type="application/zip",
            headers={**ZIP_HEADERS, "Content-Disposition": ZIP_DISPOSITION},
        )

    @app.get(f"{PREFIX}/pictures", include_in_schema=False)
    async def pictures_page(
        person: CurrentPerson, cursor: Annotated[str | None, Query(max_length=8000)] = None
    ) -> Response:
        found = await _page_of(shelf, person, PAGE_SIZE, cursor)
        body = pages.render(
            "pictures.html",
            title="My pictures",
            refresh=None,
            email=person.email,
            pictures=[_entry(p) for p in found.pictures],
            shown=[media_type(p.name) is not None for p in found.pictures],
            next=found.next,
            first=cursor is None,
            can_delete=shelf.writable(),
        )
        return HTMLResponse(body)

    @app.post(f"{PREFIX}/pictures/delete", include_in_schema=False)
    async def delete_from_page(
        request: Request, person: CurrentPerson, name: Annotated[str, Form(max_length=4096)]
    ) -> Response:
        _check_origin(request)
        await _delete(shelf, person, name)
        return RedirectResponse(f"{PREFIX}/pictures", status_code=303)
