"""The REST API in-process (TestClient): every endpoint and error status, jobs, limits, restarts."""

from __future__ import annotations

import base64
import io
import json
import os
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from styler.config import DEFAULT_FORMAT
from styler.jobs import JobStore
from styler.params import SolveRequest
from styler.service import _state
from styler.settings import Settings


def _files(
    imgs: dict[str, bytes], content: str = "content", styles: tuple[str, ...] = ("style",)
) -> list:
    parts = [("content", (f"{content}.png", imgs[content], "image/png"))]
    return parts + [("style", (f"{s}.jpg", imgs[s], "image/jpeg")) for s in styles]


def stylize(client, imgs, data: dict | None = None, **kw):
    return client.post("/v1/stylize", files=_files(imgs, **kw), data=data or {})


def submit(client, imgs, **data):
    return client.post("/v1/jobs", files=_files(imgs), data={"size": "32", **data})


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


@pytest.fixture
def gate(api_model, monkeypatch):
    """Holds every f_θ call until ``gate.release`` is set; ``gate.entered``: one is held."""
    entered, release = threading.Event(), threading.Event()
    run = api_model.stylize

    def held(*args, **kwargs):
        entered.set()
        assert release.wait(60), "the test never released the gate"
        return run(*args, **kwargs)

    monkeypatch.setattr(api_model, "stylize", held)
    yield SimpleNamespace(entered=entered, release=release)
    release.set()


@pytest.fixture
def step_gate(monkeypatch):
    """Holds a job's first progress report (after its first solver step) until released."""
    entered, release = threading.Event(), threading.Event()
    progress = JobStore.progress

    def held(self, *args, **kwargs):
        entered.set()
        assert release.wait(60), "the test never released the gate"
        return progress(self, *args, **kwargs)

    monkeypatch.setattr(JobStore, "progress", held)
    yield SimpleNamespace(entered=entered, release=release)
    release.set()


# ---- health, info, the page ----


def test_health_ready_info_page_docs(api_client):
    with api_client(max_size=512) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").json() == {"status": "ready"}
        info = c.get("/v1/info").json()
        assert info["ready"] and info["device"] == "cpu" and info["precision"] in ("bf16", "fp32")
        assert info["model"]["architecture"]["encoder"] == "lite"
        assert info["limits"]["max_size"] == 512
        assert info["limits"]["max_upload_bytes"] == 20 * 2**20
        assert info["solver"]["default_iters"] == SolveRequest().iters
        assert info["default_format"] == DEFAULT_FORMAT and DEFAULT_FORMAT in info["formats"]
        assert info["load"] == {"inferences": 0, "jobs_waiting": 0}
        page = c.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert 'id="stylize-btn"' in page.text
        assert c.get("/app.js").status_code == 200 and c.get("/style.css").status_code == 200
        assert c.get("/docs").status_code == 200
        paths = set(c.get("/openapi.json").json()["paths"])
        job = "/v1/jobs/{job_id}"
        assert {"/v1/stylize", "/v1/jobs", job, f"{job}/events", f"{job}/result"} <= paths
        error_of(c.get("/no/such/page"), 404, "not_found")


def test_model_loaded_from_file_at_start(api_client, api_model_path, api_images):
    with api_client(weights=api_model_path) as c:
        assert c.get("/readyz").status_code == 200
        assert c.get("/v1/info").json()["model"]["file"] == "tiny.safetensors"
        assert stylize(c, api_images).status_code == 200


def test_missing_model_is_not_ready(api_client, api_images, tmp_path):
    with api_client(weights=tmp_path / "missing.safetensors") as c:
        assert c.get("/healthz").status_code == 200
        assert "missing.safetensors" in error_of(c.get("/readyz"), 503, "not_ready")
        error_of(stylize(c, api_images), 503, "not_ready")
        error_of(submit(c, api_images), 503, "not_ready")
        assert c.get("/v1/info").json()["model"]["error"]


def test_settings_from_env(tmp_path, monkeypatch):
    env = {"STYLER_MAX_SIZE": "256", "STYLER_DATA_DIR": str(tmp_path),
           "STYLER_REQUEST_TIMEOUT_S": "2.5", "STYLER_OTHER": "x"}  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s = Settings()
    assert (s.max_size, s.data_dir, s.request_timeout_s, s.job_workers) == (256, tmp_path, 2.5, 1)
    monkeypatch.setenv("STYLER_MAX_SIZE", "big")
    with pytest.raises(ValueError, match="max_size"):
        Settings()
    with pytest.raises(ValueError, match="job_workers"):
        Settings(job_workers=0)
    monkeypatch.setenv("STYLER_PRECISION", "bf16")
    monkeypatch.setenv("STYLER_MAX_SIZE", "256")
    assert Settings().precision == "bf16"
    monkeypatch.setenv("STYLER_PRECISION", "fp16")
    with pytest.raises(ValueError, match="'auto', 'bf16' or 'fp32'"):
        Settings()


# ---- the fast path ----


@pytest.mark.parametrize(
    "fmt, media_type", [("png", "image/png"), ("jpeg", "image/jpeg"), ("webp", "image/webp")]
)
def test_stylize_formats(api_client, api_images, fmt, media_type):
    with api_client() as c:
        r = stylize(c, api_images, {"format": fmt, "alpha": "0.8", "size": "32"})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == media_type
        assert int(r.headers["x-elapsed-ms"]) >= 0 and r.headers["x-image-size"] == "43x32"
        im = decode(r.content)
        assert im.format == fmt.upper() and im.size == (43, 32)


def test_stylize_options(api_client, api_images):
    with api_client() as c:
        data = {"style_weights": "0.7,0.3", "preserve_color": "true", "alpha": "0", "size": "0"}
        r = stylize(c, api_images, data, styles=("style", "style2"))
        assert r.status_code == 200, r.text
        assert decode(r.content).size == (64, 48)  # size 0: the content's own


def test_transparency_is_kept(api_client, api_images):
    rgba = Image.open(io.BytesIO(api_images["content"])).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
    buf = io.BytesIO()
    rgba.save(buf, "PNG")
    with api_client() as c:
        files = [("content", ("c.png", buf.getvalue())), ("style", ("s.jpg", api_images["style"]))]
        r = c.post("/v1/stylize", files=files, data={"size": "0", "style_scale": "0.5"})
        assert r.status_code == 200, r.text
        out = decode(r.content)
        low, high = out.getchannel("A").getextrema()
        assert out.mode == "RGBA" and low < 10 and high > 245


def test_stylize_caps_output_size(api_client, api_images):
    with api_client(max_size=40) as c:
        assert stylize(c, api_images).headers["x-image-size"] == "53x40"  # the default, capped
        assert "limit of 40" in error_of(
            stylize(c, api_images, {"size": "48"}), 400, "bad_parameter"
        )


@pytest.mark.parametrize(
    "content, data, status, code, words",
    [
        ("text", {}, 400, "bad_image", "not an image"),
        ("truncated", {}, 400, "bad_image", "truncated"),
        ("tiny", {"size": "0"}, 400, "bad_image", "too small"),
        ("huge", {}, 413, "too_large", "over the limit"),
        ("content", {"alpha": "2"}, 400, "bad_parameter", "alpha"),
        ("content", {"alpha": "strong"}, 400, "bad_parameter", "alpha"),
        ("content", {"size": "4"}, 400, "bad_parameter", "size"),
        ("content", {"style_weights": "1,2"}, 400, "bad_parameter", "2 style weights for 1"),
        ("content", {"style_weights": "a,b"}, 400, "bad_parameter", "comma-separated"),
        ("content", {"format": "gif"}, 415, "unsupported_media_type", "gif"),
    ],
)
def test_stylize_errors(api_client, api_images, content, data, status, code, words):
    with api_client() as c:
        assert words in error_of(stylize(c, api_images, data, content=content), status, code)


def test_content_is_judged_by_decoding(api_client, api_images):
    with api_client() as c:
        # An image sent as text/plain under a .txt name is fine; text sent as image/png is not.
        content = ("content", ("notes.txt", api_images["content"], "text/plain"))
        r = c.post("/v1/stylize", files=[content, ("style", ("s.jpg", api_images["style"]))])
        assert r.status_code == 200
        content = ("content", ("photo.png", api_images["content"], "image/png"))
        style = ("style", ("s.png", api_images["text"], "image/png"))
        r = c.post("/v1/stylize", files=[content, style])
        assert "style 's.png': not an image" in error_of(r, 400, "bad_image")


def test_missing_fields_and_wrong_body_type(api_client, api_images):
    with api_client() as c:
        r = c.post("/v1/stylize", files=[("style", ("s.jpg", api_images["style"]))])
        assert "content" in error_of(r, 422, "missing_field")
        r = c.post("/v1/stylize", files=[("content", ("c.png", api_images["content"]))])
        assert "style" in error_of(r, 422, "missing_field")
        error_of(
            c.post("/v1/stylize", json={"content": "photo.png"}), 415, "unsupported_media_type"
        )
        too_many = _files(api_images, styles=("style",) * 5)
        assert "at most" in error_of(c.post("/v1/stylize", files=too_many), 400, "bad_parameter")


def test_upload_limit(api_client, api_images):
    with api_client(max_upload_bytes=4096) as c:
        assert len(api_images["content"]) > 4096
        assert "upload limit" in error_of(
            stylize(c, api_images), 413, "too_large"
        )  # by Content-Length

        def chunks():  # no Content-Length: counted while reading
            for _ in range(10):
                yield b"x" * 1000

        headers = {"content-type": "multipart/form-data; boundary=b"}
        r = c.post("/v1/stylize", content=chunks(), headers=headers)
        error_of(r, 413, "too_large")
        assert c.get("/healthz").status_code == 200


def test_internal_error_is_clean_json(api_client, api_images, api_model, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("secret internals at /srv/styler")

    with api_client() as c:
        monkeypatch.setattr(api_model, "stylize", boom)
        r = stylize(c, api_images)
        assert error_of(r, 500, "internal") == "internal server error" and "secret" not in r.text
        monkeypatch.undo()
        assert stylize(c, api_images).status_code == 200  # the server carries on


def test_fast_path_concurrency_limit(api_client, api_images, gate, api_wait):
    with api_client(max_inferences=1, max_waiting=1) as c, ThreadPoolExecutor(2) as threads:
        first = threads.submit(stylize, c, api_images)
        assert gate.entered.wait(30)
        second = threads.submit(stylize, c, api_images)
        waiting = lambda: c.get("/v1/info").json()["load"]["inferences"] == 2
        api_wait(waiting, what="the second request to wait in line")
        r = stylize(c, api_images)
        assert "busy" in error_of(r, 503, "busy") and int(r.headers["retry-after"]) > 0
        gate.release.set()
        assert first.result().status_code == 200 and second.result().status_code == 200
        assert stylize(c, api_images).status_code == 200


def test_fast_path_timeout(api_client, api_images, gate, api_wait):
    with api_client(request_timeout_s=0.5) as c:
        r = stylize(c, api_images)
        assert "0.5 s" in error_of(r, 503, "timeout") and "retry-after" in r.headers
        assert (
            c.get("/v1/info").json()["load"]["inferences"] == 1
        )  # still computing: its slot stays taken
        gate.release.set()
        idle = lambda: c.get("/v1/info").json()["load"]["inferences"] == 0
        api_wait(idle, what="the abandoned inference to end")
        assert stylize(c, api_images).status_code == 200


# ---- jobs ----


def test_job_lifecycle(api_client, api_images, api_wait):
    with api_client() as c:
        r = submit(c, api_images, iters="3", init="fast", format="jpeg")
        assert r.status_code == 202, r.text
        job = r.json()
        assert r.headers["location"] == f"/v1/jobs/{job['id']}"
        assert (
            job["status"] in ("queued", "running")
            and job["total"] == 3
            and job["result_url"] is None
        )
        params = job["params"]
        assert SolveRequest.from_dict(params) == SolveRequest(
            size=32, init="fast", iters=3, precision=params["precision"]
        )
        assert params["format"] == "jpeg" and params["output_size"] == [43, 32]
        assert params["precision"] in ("bf16", "fp32") and params["loss"]["style_weight"] == 10
        api_wait(lambda: job_status(c, job["id"])["status"] == "done", what="the job")
        done = job_status(c, job["id"])
        assert done["step"] == done["total"] == 3 and done["error"] is None
        assert {"total", "content", "style", "style_gram"} <= set(done["terms"])
        assert done["elapsed_s"] > 0 and done["started_at"] and done["finished_at"]
        r = c.get(done["result_url"])
        assert r.headers["content-type"] == "image/jpeg" and decode(r.content).size == (43, 32)
        assert events(c, job["id"]) == [("end", done)]  # a finished job: just the final event


def test_job_events_stream_progress_and_previews(api_client, api_images):
    with api_client() as c:
        job = submit(c, api_images, iters="4", optimizer="adam", init="noise").json()
        stream = events(c, job["id"])
        kinds = [name for name, _ in stream]
        assert (
            kinds[-1] == "end"
            and set(kinds[:-1]) == {"progress"}
            and stream[-1][1]["status"] == "done"
        )
        steps = [data["step"] for name, data in stream if name == "progress"]
        assert steps == sorted(steps) and steps[-1] >= 1
        previews = [
            data["preview"] for name, data in stream if name == "progress" and data["preview"]
        ]
        assert previews, "no preview image in the progress events"
        head, b64 = previews[-1].split(",", 1)
        assert head == "data:image/jpeg;base64"
        preview = decode(base64.b64decode(b64))
        assert preview.format == "JPEG" and max(preview.size) <= 256


def test_job_cancel_running(api_client, api_images, api_wait, step_gate):
    with api_client() as c:
        job = submit(c, api_images, iters="400", optimizer="adam").json()
        assert step_gate.entered.wait(60)  # held after its first step
        r = c.delete(f"/v1/jobs/{job['id']}")
        assert r.status_code == 202 and r.json()["status"] == "running"
        step_gate.release.set()
        api_wait(lambda: job_status(c, job["id"])["status"] == "cancelled", what="the cancel")
        assert job_status(c, job["id"])["step"] == 1
        assert "cancelled" in error_of(c.get(f"/v1/jobs/{job['id']}/result"), 409, "not_done")
        assert c.delete(f"/v1/jobs/{job['id']}").json()["status"] == "cancelled"  # again: no change


def test_job_queue_full_and_cancel_queued(api_client, api_images, gate, api_wait):
    with api_client(job_workers=1, job_queue=1) as c:
        running = submit(c, api_images, iters="1", init="fast").json()
        assert gate.entered.wait(30)  # held in f_θ, inside the only worker
        queued = submit(c, api_images, iters="1").json()
        assert job_status(c, queued["id"])["status"] == "queued"
        r = submit(c, api_images, iters="1")
        assert "queue is full" in error_of(r, 503, "busy") and int(r.headers["retry-after"]) > 0
        r = c.delete(f"/v1/jobs/{queued['id']}")
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        gate.release.set()
        api_wait(lambda: job_status(c, running["id"])["status"] == "done", what="the first job")
        assert job_status(c, queued["id"])["status"] == "cancelled"


def test_job_errors(api_client, api_images, api_model, monkeypatch, api_wait):
    with api_client(max_iters=10) as c:
        no_style = c.post("/v1/jobs", files=[("content", ("c.png", api_images["content"]))])
        assert "style" in error_of(no_style, 422, "missing_field")
        assert "limit of 10" in error_of(submit(c, api_images, iters="11"), 400, "bad_parameter")
        assert "optimizer" in error_of(submit(c, api_images, optimizer="sgd"), 400, "bad_parameter")
        assert "init" in error_of(submit(c, api_images, init="photo"), 400, "bad_parameter")
        assert "style_weight" in error_of(
            submit(c, api_images, style_weight="-1"), 400, "bad_parameter"
        )
        bad = c.post("/v1/jobs", files=_files(api_images, content="truncated"))
        assert "truncated" in error_of(bad, 400, "bad_image")
        for method, path in [("GET", ""), ("GET", "/result"), ("GET", "/events"), ("DELETE", "")]:
            error_of(c.request(method, f"/v1/jobs/nope{path}"), 404, "not_found")

        def boom(*args, **kwargs):
            raise RuntimeError("secret internals")

        monkeypatch.setattr(api_model, "stylize", boom)
        failed = submit(c, api_images, iters="1", init="fast").json()
        api_wait(lambda: job_status(c, failed["id"])["status"] == "failed", what="the job to fail")
        monkeypatch.undo()
        status = job_status(c, failed["id"])
        assert "internal error" in status["error"] and "secret" not in json.dumps(status)
        assert "failed" in error_of(c.get(f"/v1/jobs/{failed['id']}/result"), 409, "not_done")
        after = submit(c, api_images, iters="1").json()  # the worker survived
        api_wait(lambda: job_status(c, after["id"])["status"] == "done", what="the next job")


def test_restart_keeps_results_and_resumes_unfinished_jobs(api_client, api_images, api_wait,
                                                          tmp_path):  # fmt: skip
    data = tmp_path / "shared"
    with api_client(data_dir=data) as c:
        job = submit(c, api_images, iters="2").json()
        api_wait(lambda: job_status(c, job["id"])["status"] == "done", what="the job")
        result = c.get(f"/v1/jobs/{job['id']}/result").content

    # As if a server had crashed: a job checkpointed at step 2 of 4, one queued, one accepted by
    # an older styler that kept no inputs, and one running in another live server process.
    store = JobStore(data / "jobs.sqlite3")
    inputs = [("content 'c.png'", api_images["content"]), ("style 's.jpg'", api_images["style"])]
    params = {**SolveRequest(size=32, iters=4).to_dict(), "format": "png"}
    crashed, queued = store.add(params, 4, inputs), store.add(params, 4, inputs)
    legacy, elsewhere = store.add({"iters": 4}, 4, []), store.add(params, 4, inputs)
    for j in (crashed, legacy, elsewhere):
        assert store.start(j.id)
    store.checkpoint(crashed.id, 2, _state(torch.rand(1, 3, 32, 43)))
    store.close()
    with sqlite3.connect(data / "jobs.sqlite3") as db:
        db.execute("UPDATE jobs SET pid = ? WHERE id = ?", (os.getppid(), elsewhere.id))

    with api_client(data_dir=data) as c:
        assert job_status(c, job["id"])["status"] == "done"
        assert c.get(f"/v1/jobs/{job['id']}/result").content == result
        for j in (crashed, queued):
            done = lambda j=j: job_status(c, j.id)["status"] == "done"
            api_wait(done, what="the resumed jobs")
            assert decode(c.get(f"/v1/jobs/{j.id}/result").content).size == (43, 32)
        status = job_status(c, crashed.id)
        assert status["note"] == "resumed from step 2 after a server restart"
        assert status["attempts"] == 2 and status["step"] == 4
        assert job_status(c, queued.id)["attempts"] == 1 and not job_status(c, queued.id)["note"]
        status = job_status(c, legacy.id)
        assert status["status"] == "failed" and "submit again" in status["error"]
        assert job_status(c, elsewhere.id)["status"] == "running"  # another live process's job


def test_finished_jobs_are_pruned_after_the_retention_time(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3", retention_s=3600)
    old, recent = store.add({"iters": 1}, 1, []), store.add({"iters": 1}, 1, [])
    for job, data in ((old, b"x"), (recent, b"y")):
        assert store.start(job.id)
        assert store.finish(job.id, "done", result=data, media_type="image/png")
        assert not store.finish(job.id, "done", result=data, media_type="image/png")  # once
    store.close()
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:  # as if it had finished two hours ago
        db.execute("UPDATE jobs SET finished = finished - 7200 WHERE id = ?", (old.id,))

    store = JobStore(tmp_path / "jobs.sqlite3", retention_s=3600)  # pruned on open
    assert store.get(old.id) is None and store.result(old.id) is None
    assert store.result(recent.id) == (b"y", "image/png")
    running = store.add({"iters": 1}, 1, [])
    assert store.start(running.id)
    assert store.prune() == 0 and store.get(running.id).status == "running"  # never unfinished
    assert JobStore(tmp_path / "jobs.sqlite3").prune() == 0  # no retention time: everything is kept
