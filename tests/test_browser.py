"""The web page in a real browser: Debian's chromium, driven by Playwright, against a live server.

Screenshots go to test-artifacts/. ``make test`` installs chromium when it is missing, so a
missing browser is a failure with a message, not a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright

from styler.config import DEFAULT_FORMAT
from styler.params import REFINE_ITERS

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]  # fmt: skip
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
LAPTOP, PHONE = {"width": 1280, "height": 900}, {"width": 390, "height": 844}
DOWNLOAD = f"stylized.{DEFAULT_FORMAT}"  # the page asks for the server's default (/v1/info)
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
    """The content, and a style uploaded to the gallery (chosen once it is there)."""
    presets = page.locator(".swatch[data-preset]")
    expect(presets.first).to_be_visible()
    uploads = page.locator(".swatch:not([data-preset])").count()
    page.set_input_files("#style-input", style)  # before the content: nothing renders yet
    expect(page.locator(".swatch:not([data-preset])")).to_have_count(uploads + 1)
    expect(page.locator(".swatch[aria-pressed=true]")).not_to_have_attribute("data-preset", "")
    page.set_input_files("#content-input", content)
    for role in ("content", "style"):
        expect(page.locator(f"#{role}-preview")).to_be_visible()
    expect(page.locator("#size")).to_have_value("0")  # the content's own size by default


def stylize(page: Page) -> None:
    with page.expect_response("**/v1/stylize"):
        page.click("#stylize-btn")
    expect(page.locator("#result-img")).to_be_visible()
    page.wait_for_function("document.getElementById('result-img').naturalWidth > 0")
    expect(page.locator("#result-info")).to_contain_text("ms on the server")


def test_stylize_refine_cancel_and_errors(browser, server, inputs):
    page = open_page(browser, server, LAPTOP)
    expect(page.locator("#stylize-btn")).to_be_disabled()
    choose(page, inputs["content"], inputs["style"])
    stylize(page)
    expect(page.locator("#download-btn")).to_have_attribute("download", DOWNLOAD)
    expect(page.locator("#message")).to_be_hidden()
    page.screenshot(path=ARTIFACTS / "1-stylized.png", full_page=True)

    # Refinement: the progress bar and the image follow the job's event stream to the end.
    expect(page.locator("#iters")).to_have_value(str(REFINE_ITERS))  # the server's default
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


def test_the_format_picker_starts_at_the_servers_default(browser, server):
    """The page takes its default format from /v1/info, not from its own HTML."""
    page = browser.new_page(viewport=LAPTOP)

    def webp_default(route) -> None:
        info = route.fetch().json()
        route.fulfill(json={**info, "default_format": "webp"})

    page.route("**/v1/info", webp_default)
    page.goto(server)
    expect(page.locator("#status-badge")).to_have_text("ready")
    expect(page.locator("#format")).to_have_value("webp")
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


RECORD_FORMS = """() => {  // keep the text fields of every form the page sends
    window.sentForms = [];
    const fetch0 = window.fetch;
    window.fetch = (url, options = {}) => {
        if (options.body instanceof FormData) {
            const fields = {};
            for (const [k, v] of options.body.entries())
                fields[k] = v instanceof File ? "<file>" : v;
            window.sentForms.push(fields);
        }
        return fetch0(url, options);
    };
}"""


def last_form(page: Page) -> dict:
    return page.evaluate("window.sentForms[window.sentForms.length - 1]")


def set_slider(page: Page, selector: str, value: float) -> None:
    page.eval_on_selector(
        selector,
        "(el, v) => { el.value = v; el.dispatchEvent(new Event('input', { bubbles: true })); }",
        value,
    )


def test_gallery_stroke_size_and_alpha_rerender(browser, server, inputs):
    page = open_page(browser, server, LAPTOP)
    presets = page.locator(".swatch[data-preset]")
    expect(presets).to_have_count(10)
    page.wait_for_function("[...document.querySelectorAll('.swatch img')].every("
                           "i => i.complete && i.naturalWidth > 0)")  # fmt: skip
    page.evaluate(RECORD_FORMS)
    page.set_input_files("#content-input", inputs["content"])

    # Clicking a preset stylizes with it (by id: nothing uploaded).
    with page.expect_response("**/v1/stylize"):
        presets.nth(2).click()
    form = last_form(page)
    assert form["style_id"] == presets.nth(2).get_attribute("data-id") and "style" not in form
    assert form["content"] == "<file>" and form["size"] == "0"
    expect(presets.nth(2)).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#result-info")).to_contain_text("ms on the server")
    expect(page.locator("#download-btn")).to_have_attribute("download", DOWNLOAD)
    page.screenshot(path=ARTIFACTS / "5-gallery.png", full_page=True)

    # The stroke-size slider is there and goes into the request (style codes: a new size).
    expect(page.locator("#style-scale")).to_be_visible()
    with page.expect_response("**/v1/stylize") as answer:
        set_slider(page, "#style-scale", 1.5)
    assert last_form(page)["style_scale"] == "1.5"
    assert answer.value.headers["x-styler-cache"] == "style=miss,content=hit"
    expect(page.locator("#style-scale-value")).to_have_text("1.50×")

    # Moving alpha re-renders from the server's cache, once the slider rests: one request.
    sent = page.evaluate("window.sentForms.length")
    with page.expect_response("**/v1/stylize") as answer:
        for value in (0.9, 0.7, 0.5):
            set_slider(page, "#alpha", value)
    assert (
        last_form(page)["alpha"] == "0.5" and page.evaluate("window.sentForms.length") == sent + 1
    )
    assert answer.value.headers["x-styler-cache"] == "style=hit,content=hit"
    expect(page.locator("#result-info")).to_contain_text("cache: style hit, content hit")
    page.screenshot(path=ARTIFACTS / "6-rerendered.png", full_page=True)
    page.close()


def answer_confirm(page: Page, accept: bool) -> list[str]:
    """Answer the page's next confirm(): the list gets its message."""
    asked: list[str] = []

    def answer(dialog: Dialog) -> None:
        asked.append(dialog.message)
        if accept:
            dialog.accept()
        else:
            dialog.dismiss()

    page.once("dialog", answer)
    return asked


def test_an_uploaded_style_can_be_removed_from_the_gallery_a_preset_cannot(browser, server, inputs):
    page = open_page(browser, server, LAPTOP)
    presets, uploads = (
        page.locator(".swatch[data-preset]"),
        page.locator(".swatch:not([data-preset])"),
    )
    expect(presets).to_have_count(10)
    before = uploads.count()
    page.set_input_files("#style-input", inputs["style"])
    expect(uploads).to_have_count(before + 1)
    chosen = page.locator(".swatch[aria-pressed=true]").get_attribute("data-id")
    expect(page.locator("#remove-style-btn")).to_be_visible()  # the upload is chosen
    presets.first.click()
    expect(page.locator("#remove-style-btn")).to_be_hidden()  # presets are read-only

    page.locator(f'.swatch[data-id="{chosen}"]').click()
    deletes: list[str] = []
    page.on("request", lambda request: request.method == "DELETE" and deletes.append(request.url))
    asked = answer_confirm(page, accept=False)
    page.click("#remove-style-btn")  # second thoughts: nothing is deleted
    assert asked == ['Remove "painting.jpg" from the gallery?'] and deletes == []
    expect(uploads).to_have_count(before + 1)

    asked = answer_confirm(page, accept=True)
    with page.expect_response(f"**/v1/styles/{chosen}") as answer:
        page.click("#remove-style-btn")
    assert asked and answer.value.request.method == "DELETE" and answer.value.ok
    expect(uploads).to_have_count(before)
    expect(page.locator(f'.swatch[data-id="{chosen}"]')).to_have_count(0)
    expect(page.locator("#style-name")).to_have_text("pick a painting, or upload one")
    expect(page.locator("#stylize-btn")).to_be_disabled()
    styles = page.evaluate("fetch('/v1/styles').then(r => r.json())")["styles"]
    assert chosen not in {s["id"] for s in styles}
    page.close()


def test_removing_a_style_already_gone_shows_why_and_drops_it(browser, server, inputs):
    page = open_page(browser, server, LAPTOP)
    uploads = page.locator(".swatch:not([data-preset])")
    expect(page.locator(".swatch[data-preset]")).to_have_count(10)  # the gallery is loaded
    before = uploads.count()
    page.set_input_files("#style-input", inputs["style"])
    expect(uploads).to_have_count(before + 1)
    expect(page.locator("#remove-style-btn")).to_be_visible()
    chosen = page.locator(".swatch[aria-pressed=true]").get_attribute("data-id")
    gone = "id => fetch(`/v1/styles/${id}`, { method: 'DELETE' }).then(r => r.status)"
    assert page.evaluate(gone, chosen) == 200  # e.g. from another tab

    answer_confirm(page, accept=True)
    with page.expect_response(f"**/v1/styles/{chosen}") as answer:
        page.click("#remove-style-btn")
    assert answer.value.status == 404
    expect(page.locator("#message")).to_be_visible()
    expect(page.locator("#message")).to_have_class("message error")
    expect(page.locator("#message")).to_contain_text("no such style")
    expect(uploads).to_have_count(before)
    expect(page.locator("#remove-style-btn")).to_be_hidden()
    expect(page.locator("#style-name")).to_have_text("pick a painting, or upload one")
    page.close()
