"""A bounded burst of concurrent fast-path requests against a live server: every request ends in
an image or a clean 429/503 with Retry-After, some succeed, and the server is healthy afterwards.
Timings are measured by ``styler bench``, not asserted here."""

from __future__ import annotations

import asyncio

import httpx2

REQUESTS = 50


async def burst(url: str, files: list, n: int) -> list[httpx2.Response]:
    limits = httpx2.Limits(max_connections=n)
    async with httpx2.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        calls = (client.post("/v1/stylize", files=files, data={"size": "32"}) for _ in range(n))
        return await asyncio.gather(*calls)


def test_concurrent_fast_requests(api_server, api_images):
    files = [("content", ("c.png", api_images["content"], "image/png")),
             ("style", ("s.jpg", api_images["style"], "image/jpeg"))]  # fmt: skip
    with api_server(STYLER_MAX_INFERENCES="2", STYLER_MAX_WAITING="8") as url:
        results = asyncio.run(burst(url, files, REQUESTS))
        ok = [r for r in results if r.status_code == 200]
        for r in ok:
            assert r.headers["content-type"] == "image/png" and r.content.startswith(b"\x89PNG")
        for r in results:
            if r.status_code != 200:
                assert r.status_code in (429, 503), r.text
                assert r.json()["error"]["code"] == "busy" and int(r.headers["retry-after"]) > 0
        assert len(ok) >= 2 + 8 or len(ok) == REQUESTS, "fewer successes than the server admits"
        assert httpx2.get(f"{url}/healthz").json() == {"status": "ok"}
        assert httpx2.get(f"{url}/v1/info").json()["load"]["inferences"] == 0
        after = httpx2.post(f"{url}/v1/stylize", files=files, data={"size": "32"}, timeout=60)
        assert after.status_code == 200
