"""The style gallery's routes: the presets shipped with styler and the styles users upload.

    POST   /v1/styles                  upload a style (multipart ``style``, optional ``name``) →
                                       201 with its entry; its code is computed once and stored
    GET    /v1/styles                  {"styles": [...]}: presets first, then uploads
    GET    /v1/styles/{id}             one entry (the ``Location`` of an upload)
    GET    /v1/styles/{id}/thumbnail   a small JPEG
    DELETE /v1/styles/{id}             an upload (a preset: 409 read_only)

Uploads live under ``STYLER_DATA_DIR/styles`` and are deleted with the jobs' retention; a
``style_id`` names one in ``/v1/stylize`` and ``/v1/jobs``.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import FileResponse, JSONResponse

from .forms import Svc, multipart
from .gallery import StyleEntry, list_presets
from .jobs import iso_time

router = APIRouter(prefix="/v1/styles", tags=["styles"])


def _entry_json(entry: StyleEntry) -> dict[str, Any]:
    preset = next((p for p in list_presets() if p.id == entry.id), None) if entry.preset else None
    return {
        "id": entry.id,
        "name": entry.name,
        "preset": entry.preset,
        "artist": entry.artist,
        "year": preset.year if preset else None,
        "created_at": iso_time(entry.created),
        "thumbnail_url": f"/v1/styles/{entry.id}/thumbnail",
    }


@router.get("")
def list_styles(svc: Svc) -> dict[str, list[dict[str, Any]]]:
    """The presets, then the uploaded styles from the oldest."""
    return {"styles": [_entry_json(e) for e in svc.styles.list()]}


@router.post("", status_code=201, dependencies=[Depends(multipart)])
async def add_style(
    svc: Svc,
    style: Annotated[UploadFile, File(description="the style image")],
    name: Annotated[
        str | None, Form(description="shown in the gallery (default: file name)")
    ] = None,
) -> JSONResponse:
    """Upload a style once; use its id as ``style_id``. 400 not an image, 413 too large."""
    svc.ready_model()
    data = await style.read()
    work = partial(svc.add_style, data, name or style.filename or "style")
    entry = await svc.limiter.run(work, svc.settings.request_timeout_s)
    headers = {"Location": f"/v1/styles/{entry.id}"}
    return JSONResponse(_entry_json(entry), status_code=201, headers=headers)


@router.get("/{style_id}")
async def get_style(svc: Svc, style_id: str) -> dict[str, Any]:
    """One style's entry, as in the list (404 for an unknown id)."""
    return _entry_json(await asyncio.to_thread(svc.styles.get, style_id))


@router.get("/{style_id}/thumbnail", response_class=FileResponse,
            responses={200: {"content": {"image/jpeg": {}}}})  # fmt: skip
async def thumbnail(svc: Svc, style_id: str) -> FileResponse:
    """A small JPEG, its longer side gallery.THUMB_SIDE px (404 for an unknown id)."""
    entry = await asyncio.to_thread(svc.styles.get, style_id)
    cache = "public, max-age=86400" if entry.preset else "private, max-age=3600"
    return FileResponse(entry.thumbnail, media_type="image/jpeg",
                        headers={"Cache-Control": cache})  # fmt: skip


@router.delete("/{style_id}")
def delete_style(svc: Svc, style_id: str) -> dict[str, str]:
    """Delete an upload and its stored codes (presets: 409; unknown: 404)."""
    svc.styles.delete(style_id)
    return {"deleted": style_id}
