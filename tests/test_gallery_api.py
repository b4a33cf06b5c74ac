"""The API's style gallery, statistics cache, original sizes and transparency (TestClient)."""

from __future__ import annotations

import time

import numpy as np
from api_helpers import decode, error_of, job_status, stylize, with_alpha
from core_helpers import tame_net

from styler.gallery import list_presets

PRESET = list_presets()[0].id


def content_only(imgs: dict[str, bytes], key: str = "content") -> list:
    return [("content", ("c.png", imgs[key], "image/png"))]


def by_id(client, imgs, style_id: str, data: dict | None = None, content: str = "content"):
    form = {"style_id": style_id, **(data or {})}
    return client.post("/v1/stylize", files=content_only(imgs, content), data=form)


def upload(client, data: bytes, name: str = "mine.jpg"):
    return client.post("/v1/styles", files=[("style", (name, data, "image/jpeg"))])


def test_presets_are_listed_with_thumbnails(api_client):
    with api_client() as c:
        styles = c.get("/v1/styles").json()["styles"]
        presets = [s for s in styles if s["preset"]]
        assert [s["id"] for s in presets] == [p.id for p in list_presets()]
        first = presets[0]
        assert first["artist"] == list_presets()[0].artist and first["year"]
        r = c.get(first["thumbnail_url"])
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        assert max(decode(r.content).size) <= 160
        error_of(c.get("/v1/styles/nope/thumbnail"), 404, "not_found")


def test_upload_use_and_delete_a_style(api_client, api_images, api_wait):
    with api_client() as c:
        r = upload(c, api_images["style"], "waves.jpg")
        assert r.status_code == 201, r.text
        entry = r.json()
        assert entry["name"] == "waves.jpg" and not entry["preset"] and entry["created_at"]
        assert r.headers["location"] == f"/v1/styles/{entry['id']}"
        assert c.get(r.headers["location"]).json() == entry  # the Location answers
        assert entry["id"] in [s["id"] for s in c.get("/v1/styles").json()["styles"]]
        assert c.get(entry["thumbnail_url"]).status_code == 200

        r = by_id(c, api_images, entry["id"], {"size": "32"})
        assert r.status_code == 200, r.text
        assert decode(r.content).size == (43, 32)
        job = c.post("/v1/jobs", files=content_only(api_images),
                     data={"style_id": entry["id"], "size": "32", "iters": "1"}).json()  # fmt: skip
        api_wait(lambda: job_status(c, job["id"])["status"] == "done", what="the job")

        assert c.delete(f"/v1/styles/{entry['id']}").json() == {"deleted": entry["id"]}
        error_of(c.delete(f"/v1/styles/{entry['id']}"), 404, "not_found")
        error_of(c.get(f"/v1/styles/{entry['id']}"), 404, "not_found")
        assert "no such style" in error_of(by_id(c, api_images, entry["id"]), 404, "not_found")
        assert "preset" in error_of(c.delete(f"/v1/styles/{PRESET}"), 409, "read_only")
        assert by_id(c, api_images, PRESET).status_code == 200


def test_bad_style_uploads(api_client, api_images):
    with api_client(max_upload_bytes=20_000) as c:
        assert "not an image" in error_of(upload(c, api_images["text"]), 400, "bad_image")
        error_of(upload(c, api_images["huge"]), 413, "too_large")
        error_of(upload(c, np.random.default_rng(0).bytes(30_000)), 413, "too_large")
        no_file = c.post("/v1/styles", files=[("name", (None, "x"))])
        assert "style" in error_of(no_file, 422, "missing_field")
        r = c.post("/v1/stylize", files=content_only(api_images))
        assert "style_id" in error_of(r, 422, "missing_field")


def test_uploaded_styles_follow_the_job_retention(api_client, api_images):
    with api_client(job_retention_days=0.5 / 86400) as c:  # half a second
        old = upload(c, api_images["style"]).json()["id"]
        time.sleep(0.6)
        new = upload(c, api_images["style2"]).json()["id"]  # an upload prunes the old ones
        ids = [s["id"] for s in c.get("/v1/styles").json()["styles"]]
        assert new in ids and old not in ids
        assert len(ids) == len(list_presets()) + 1


def pixels(r) -> np.ndarray:
    assert r.status_code == 200, r.text
    return np.asarray(decode(r.content), dtype=float)


def test_the_cache_serves_a_second_request_with_the_same_style(api_client, api_images):
    net = tame_net()
    with api_client(weights=net, cache_mb=0) as c:
        expected = pixels(stylize(c, api_images, {"alpha": "0.5"}))
    with api_client(weights=net) as c:
        first = stylize(c, api_images, {"alpha": "1"})
        assert first.headers["x-styler-cache"] == "style=miss,content=miss"
        second = stylize(c, api_images, {"alpha": "0.5"})  # only alpha moved
        assert second.headers["x-styler-cache"] == "style=hit,content=hit"
        assert np.abs(pixels(second) - expected).max() <= 1  # the cache changes nothing
        other = stylize(c, api_images, {"alpha": "0.5"}, content="tiny")  # another photo
        assert other.status_code == 400  # too small: judged before the cache is asked
        scaled = stylize(c, api_images, {"style_scale": "2"})  # another stroke size
        assert scaled.headers["x-styler-cache"] == "style=miss,content=hit"
        assert c.get("/v1/info").json()["cache"]["styles"] == 2


def test_without_a_cache_every_request_computes(api_client, api_images):
    with api_client(cache_mb=0) as c:
        for _ in range(2):
            assert stylize(c, api_images).headers["x-styler-cache"] == "style=miss,content=miss"


def test_a_named_style_code_is_computed_at_upload(api_client, api_images):
    with api_client(max_size=48) as c:  # the content's shorter side is the server's size cap
        sid = upload(c, api_images["style"]).json()["id"]
        r = by_id(c, api_images, sid)
        assert r.headers["x-styler-cache"] == "style=hit,content=miss"
    with api_client(max_size=48) as c:  # a new process: the code is read from the data folder
        assert by_id(c, api_images, sid).headers["x-styler-cache"] == "style=stored,content=miss"
        assert by_id(c, api_images, PRESET).headers["x-styler-cache"] == "style=miss,content=hit"
    with api_client(max_size=48) as c:
        assert by_id(c, api_images, PRESET).headers["x-styler-cache"].startswith("style=stored")


def test_original_size_by_default_and_scaled_down_says_so(api_client, api_images, api_wait):
    with api_client() as c:
        r = stylize(c, api_images)
        assert r.headers["x-image-size"] == "64x48" and "x-styler-scaled" not in r.headers
        assert decode(r.content).size == (64, 48)
    with api_client(max_side=50) as c:
        r = stylize(c, api_images)
        assert r.headers["x-styler-scaled"] == "64x48->50x38"
        assert decode(r.content).size == (50, 38)
        job = c.post("/v1/jobs", files=content_only(api_images),
                     data={"style_id": PRESET, "size": "0", "iters": "1"}).json()  # fmt: skip
        assert job["scaled"] == "64x48->50x38" and job["params"]["output_size"] == [50, 38]
        api_wait(lambda: job_status(c, job["id"])["status"] == "done", what="the job")
        assert job_status(c, job["id"])["scaled"] == "64x48->50x38"


def test_alpha_round_trip(api_client, api_images):
    rgba, png = with_alpha(api_images["content"])
    with api_client() as c:
        files = [("content", ("c.png", png, "image/png"))]
        r = c.post("/v1/stylize", files=files, data={"style_id": PRESET})
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        out = decode(r.content)
        assert out.mode == "RGBA" and out.size == rgba.size
        diff = np.abs(np.asarray(out.getchannel("A"), int) - np.asarray(rgba.getchannel("A"), int))
        assert diff.max() <= 1
