"""The web page in a real browser: Debian's chromium, driven by Playwright, against a live server.

Screenshots go to test-artifacts/. ``make test`` installs chromium when it is missing, so a
missing browser is a failure with a message, not a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
LAPTOP, PHONE = {"width": 1280, "height": 900}, {"width": 390, "height": 844}
expect.set_options(timeout=60_000)  # a busy CPU can make the solver slow


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"{CHROMIUM} not found: `make test` installs Debian's chromium, or set CHROMIUM="
        )
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(api_server) -> Iterator[str]:
    with api_server(STYLER_MAX_ITERS="5000") as url:
        yield url


@pytest.fixture(scope="module")
def inputs(api_images, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("browser")
    names = {"content": "photo.png", "style": "painting.jpg", "text": "notes.txt"}
    for key, name in names.items():
        (folder / name).write_bytes(api_images[key])
    return {key: folder / name for key, name in names.items()}


def open_page(browser: Browser, url: str, viewport: dict) -> Page:
    page = browser.new_page(viewport=viewport)
    page.set_default_timeout(60_000)
    page.goto(url)
    expect(page.locator("#status-badge")).to_have_text("ready")
    return page


def choose(page: Page, content: Path, style: Path) -> None:
    page.set_input_files("#content-input", content)
    page.set_input_files("#style-input", style)
    for role in ("content", "style"):
        expect(page.locator(f"#{role}-preview")).to_be_visible()
    page.select_option(
        "#size", "0"
    )  # the content's own size: tiny, so the solver is quick on a CPU


def stylize(page: Page) -> None:
    page.click("#stylize-btn")
    expect(page.locator("#result-img")).to_be_visible()
    page.wait_for_function("document.getElementById('result-img').naturalWidth > 0")
    expect(page.locator("#result-info")).to_contain_text("ms on the server")


def test_stylize_refine_cancel_and_errors(browser, server, inputs):
    page = open_page(browser, server, LAPTOP)
    expect(page.locator("#stylize-btn")).to_be_disabled()
    choose(page, inputs["content"], inputs["style"])
    stylize(page)
    expect(page.locator("#download-btn")).to_have_attribute("download", "stylized.png")
    expect(page.locator("#message")).to_be_hidden()
    page.screenshot(path=ARTIFACTS / "1-stylized.png", full_page=True)

    # Refinement: the progress bar and the image follow the job's event stream to the end.
    page.fill("#iters", "6")
    page.click("#refine-btn")
    expect(page.locator("#refine-card")).to_be_visible()
    page.wait_for_function("document.getElementById('refine-progress').value >= 1")
    expect(page.locator("#refine-download")).to_be_visible()
    assert page.eval_on_selector("#refine-progress", "p => [p.value, p.max]") == [6, 6]
    expect(page.locator("#refine-status")).to_contain_text("done · step 6 of 6")
    assert page.eval_on_selector("#refine-img", "img => img.naturalWidth") > 0
    page.screenshot(path=ARTIFACTS / "2-refined.png", full_page=True)

    # Cancel a refinement far too long to end first, once it has started.
    page.fill("#iters", "5000")
    page.click("#refine-btn")
    page.wait_for_function("document.getElementById('refine-progress').value >= 1")
    page.click("#cancel-btn")
    expect(page.locator("#refine-status")).to_contain_text("cancelled at step")
    expect(page.locator("#cancel-btn")).to_be_hidden()

    # A text file: the API's message is shown inline.
    page.set_input_files("#content-input", inputs["text"])
    page.click("#stylize-btn")
    expect(page.locator("#message")).to_be_visible()
    expect(page.locator("#message")).to_contain_text("notes.txt': not an image")
    page.screenshot(path=ARTIFACTS / "3-error.png", full_page=True)
    page.close()


def test_phone_layout(browser, server, inputs):
    page = open_page(browser, server, PHONE)
    choose(page, inputs["content"], inputs["style"])
    stylize(page)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), (
        "the page scrolls sideways"
    )
    box = page.locator("#stylize-btn").bounding_box()
    assert box and box["width"] > PHONE["width"] * 0.8  # full-width button on a phone
    page.screenshot(path=ARTIFACTS / "4-phone.png", full_page=True)
    page.close()
