"""Requests and checks shared by the REST API tests (a plain module, imported by the test files)."""

from __future__ import annotations

import io
import json

from PIL import Image


def files_of(
    imgs: dict[str, bytes], content: str = "content", styles: tuple[str, ...] = ("style",)
) -> list:
    parts = [("content", (f"{content}.png", imgs[content], "image/png"))]
    return parts + [("style", (f"{s}.jpg", imgs[s], "image/jpeg")) for s in styles]


def stylize(client, imgs, data: dict | None = None, **kw):
    return client.post("/v1/stylize", files=files_of(imgs, **kw), data=data or {})


def submit(client, imgs, **data):
    return client.post("/v1/jobs", files=files_of(imgs), data={"size": "32", **data})


def job_status(client, job_id: str) -> dict:
    return client.get(f"/v1/jobs/{job_id}").json()


def error_of(r, status: int, code: str) -> str:
    """Check the common error shape and status; the message."""
    assert r.status_code == status, r.text
    body = r.json()
    assert list(body) == ["error"] and sorted(body["error"]) == ["code", "message"], body
    assert body["error"]["code"] == code, body
    assert "Traceback" not in r.text and 'File "' not in r.text
    return body["error"]["message"]


def with_alpha(data: bytes) -> tuple[Image.Image, bytes]:
    """The picture in DATA with an alpha ramp (0 at the top, 255 at the bottom), and its PNG."""
    rgba = Image.open(io.BytesIO(data)).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
    buf = io.BytesIO()
    rgba.save(buf, "PNG")
    return rgba, buf.getvalue()


def decode(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def events(client, job_id: str) -> list[tuple[str, dict]]:
    """The whole SSE stream of a job, as (event, data) pairs."""
    out, name = [], None
    with client.stream("GET", f"/v1/jobs/{job_id}/events") as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                out.append((name, json.loads(line.removeprefix("data: "))))
    return out
