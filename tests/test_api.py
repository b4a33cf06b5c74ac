"""The REST API in-process (TestClient): health, info, the page, and the fast path with its
errors and limits."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from api_helpers import decode, error_of, files_of, stylize, submit, with_alpha

from styler.config import DEFAULT_FORMAT
from styler.params import REFINE_ITERS, SolveRequest
from styler.settings import Settings

# ---- health, info, the page ----


def test_health_ready_info_page_docs(api_client):
    with api_client(max_size=512) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").json() == {"status": "ready"}
        info = c.get("/v1/info").json()
        assert info["ready"] and info["device"] == "cpu"
        assert info["precision"] in ("int8", "bf16", "fp32")
        assert info["model"]["architecture"]["encoder"] == "lite"
        assert info["limits"]["max_size"] == 512
        assert info["limits"]["max_upload_bytes"] == 20 * 2**20
        assert info["solver"]["default_iters"] == SolveRequest().iters
        assert info["solver"]["refine_iters"] == REFINE_ITERS
        assert info["default_format"] == DEFAULT_FORMAT and DEFAULT_FORMAT in info["formats"]
        assert info["load"] == {"inferences": 0, "jobs_waiting": 0}
        page = c.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert 'id="stylize-btn"' in page.text
        for name in ("app.js", "common.js", "inputs.js", "style.css"):
            assert c.get(f"/{name}").status_code == 200, name
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
    with pytest.raises(ValueError, match="'auto', 'int8', 'bf16' or 'fp32'"):
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
    _, png = with_alpha(api_images["content"])
    with api_client() as c:
        files = [("content", ("c.png", png)), ("style", ("s.jpg", api_images["style"]))]
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
        too_many = files_of(api_images, styles=("style",) * 5)
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


def test_fast_path_concurrency_limit(api_client, api_images, api_gate, api_wait):
    with api_client(max_inferences=1, max_waiting=1) as c, ThreadPoolExecutor(2) as threads:
        first = threads.submit(stylize, c, api_images)
        assert api_gate.entered.wait(30)
        second = threads.submit(stylize, c, api_images)
        waiting = lambda: c.get("/v1/info").json()["load"]["inferences"] == 2
        api_wait(waiting, what="the second request to wait in line")
        r = stylize(c, api_images)
        assert "busy" in error_of(r, 503, "busy") and int(r.headers["retry-after"]) > 0
        api_gate.release.set()
        assert first.result().status_code == 200 and second.result().status_code == 200
        assert stylize(c, api_images).status_code == 200


def test_fast_path_timeout(api_client, api_images, api_gate, api_wait):
    with api_client(request_timeout_s=0.5) as c:
        r = stylize(c, api_images)
        assert "0.5 s" in error_of(r, 503, "timeout") and "retry-after" in r.headers
        assert (
            c.get("/v1/info").json()["load"]["inferences"] == 1
        )  # still computing: its slot stays taken
        api_gate.release.set()
        idle = lambda: c.get("/v1/info").json()["load"]["inferences"] == 0
        api_wait(idle, what="the abandoned inference to end")
        assert stylize(c, api_images).status_code == 200
