"""The REST API's jobs in-process (TestClient): lifecycle, events, cancelling, errors,
restarts and retention."""

from __future__ import annotations

import base64
import json
import os
import sqlite3

import torch
from api_helpers import decode, error_of, events, files_of, job_status, submit

from styler.jobs import JobStore
from styler.params import JobSpec, SolveRequest, Source
from styler.service import _state

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
        assert params["precision"] in ("int8", "bf16", "fp32")
        assert params["loss"]["style_weight"] == 10
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


def test_job_cancel_running(api_client, api_images, api_wait, api_step_gate):
    with api_client() as c:
        job = submit(c, api_images, iters="400", optimizer="adam").json()
        assert api_step_gate.entered.wait(60)  # held after its first step
        r = c.delete(f"/v1/jobs/{job['id']}")
        assert r.status_code == 202 and r.json()["status"] == "running"
        api_step_gate.release.set()
        api_wait(lambda: job_status(c, job["id"])["status"] == "cancelled", what="the cancel")
        assert job_status(c, job["id"])["step"] == 1
        assert "cancelled" in error_of(c.get(f"/v1/jobs/{job['id']}/result"), 409, "not_done")
        assert c.delete(f"/v1/jobs/{job['id']}").json()["status"] == "cancelled"  # again: no change


def test_job_queue_full_and_cancel_queued(api_client, api_images, api_gate, api_wait):
    with api_client(job_workers=1, job_queue=1) as c:
        running = submit(c, api_images, iters="1", init="fast").json()
        assert api_gate.entered.wait(30)  # held in f_θ, inside the only worker
        queued = submit(c, api_images, iters="1").json()
        assert job_status(c, queued["id"])["status"] == "queued"
        r = submit(c, api_images, iters="1")
        assert "queue is full" in error_of(r, 503, "busy") and int(r.headers["retry-after"]) > 0
        r = c.delete(f"/v1/jobs/{queued['id']}")
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        api_gate.release.set()
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
        bad = c.post("/v1/jobs", files=files_of(api_images, content="truncated"))
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
    inputs = [Source("content 'c.png'", api_images["content"]),
              Source("style 's.jpg'", api_images["style"])]  # fmt: skip
    spec = JobSpec(SolveRequest(size=32, iters=4), "png", (43, 32))
    crashed, queued = store.add(spec, inputs), store.add(spec, inputs)
    legacy, elsewhere = store.add(spec, []), store.add(spec, inputs)
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


ONE_STEP = JobSpec(SolveRequest(iters=1), "png", (1, 1))


def test_finished_jobs_are_pruned_after_the_retention_time(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3", retention_s=3600)
    old, recent = store.add(ONE_STEP, []), store.add(ONE_STEP, [])
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
    running = store.add(ONE_STEP, [])
    assert store.start(running.id)
    assert store.prune() == 0 and store.get(running.id).status == "running"  # never unfinished
    assert JobStore(tmp_path / "jobs.sqlite3").prune() == 0  # no retention time: everything is kept
