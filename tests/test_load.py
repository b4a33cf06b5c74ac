"""A bounded load smoke test: a burst of concurrent fast-path requests against a live server.

Every request must end in a 200 image or a clean 503 with Retry-After, and the server must answer
afterwards. The figures are printed, not asserted: timings depend on the machine.
"""

from __future__ import annotations

import asyncio
import math
import time

import httpx
import pytest

REQUESTS = 50


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ranked = sorted(values)
    return ranked[max(0, math.ceil(q / 100 * len(ranked)) - 1)]


async def burst(url: str, files: list, n: int) -> list[tuple[httpx.Response, float]]:
    async def one(client: httpx.AsyncClient) -> tuple[httpx.Response, float]:
        t0 = time.perf_counter()
        r = await client.post("/v1/stylize", files=files, data={"size": "32"})
        return r, (time.perf_counter() - t0) * 1000

    async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=n)) as client:
        return await asyncio.gather(*(one(client) for _ in range(n)))


def test_concurrent_fast_requests(api_server, api_images, capsys: pytest.CaptureFixture):
    files = [("content", ("c.png", api_images["content"], "image/png")), ("style", ("s.jpg", api_images["style"], "image/jpeg"))]
    with api_server(STYLER_MAX_INFERENCES="2", STYLER_MAX_WAITING="8") as url:
        results = asyncio.run(burst(url, files, REQUESTS))
        ok = [ms for r, ms in results if r.status_code == 200]
        rejected = [ms for r, ms in results if r.status_code in (429, 503)]
        for r, _ in results:
            if r.status_code == 200:
                assert r.headers["content-type"] == "image/png" and r.content.startswith(b"\x89PNG")
            else:
                assert r.status_code in (429, 503), r.text
                assert r.json()["error"]["code"] == "busy" and int(r.headers["retry-after"]) > 0
        assert len(ok) + len(rejected) == REQUESTS and ok, "no request succeeded"
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
        assert httpx.post(f"{url}/v1/stylize", files=files, data={"size": "32"}).status_code == 200

    latencies = [ms for _, ms in results]
    with capsys.disabled():
        print(
            f"\nload: {REQUESTS} concurrent requests → {len(ok)} succeeded, {len(rejected)} rejected (503 busy); "
            f"latency ms all p50 {percentile(latencies, 50):.0f} p90 {percentile(latencies, 90):.0f} p99 {percentile(latencies, 99):.0f}; "
            f"successes p50 {percentile(ok, 50):.0f} p90 {percentile(ok, 90):.0f} p99 {percentile(ok, 99):.0f}; "
            f"rejections p50 {percentile(rejected, 50) if rejected else 0:.0f}"
        )
