"""End to end: the playground page in headless Chromium (Debian's) against the real service."""

import json
import os
import shutil
from pathlib import Path

import httpx
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if not CHROMIUM and not os.environ.get("INFOGAN_REQUIRE_BROWSER"):
    pytest.skip("Debian's chromium is not installed (make e2e-deps)", allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser, server):
    # Playwright's waits evaluate strings in the page, which the page's own policy forbids (no eval): bypassed
    # here, and the page's behaviour under its policy is tested on its own below.
    context = browser.new_context(viewport={"width": 1000, "height": 1400}, bypass_csp=True)
    page = context.new_page()
    page.generate_bodies = []
    page.on("request", lambda r: page.generate_bodies.append(json.loads(r.post_data))
            if r.url.endswith("/generate") else None)
    page.goto(server.url + "/")
    expect(page.locator("#model-line")).to_contain_text("running on CPUExecutionProvider")
    page.wait_for_function("document.getElementById('preview').naturalWidth > 0")
    yield page
    context.close()


PIXELS = """() => {
    const image = document.getElementById('preview');
    const canvas = Object.assign(document.createElement('canvas'), {width: image.naturalWidth, height: image.naturalHeight});
    canvas.getContext('2d').drawImage(image, 0, 0);
    return canvas.toDataURL();
}"""


def test_slider_moves_the_image(page):
    first = page.evaluate(PIXELS)
    slider = page.get_by_label("c2 (continuous)")
    slider.focus()
    for _ in range(10):
        page.keyboard.press("ArrowRight")  # keyboard-operable: 10 steps of 0.05
    expect(page.locator("#value-c2")).to_have_text("0.50")
    page.wait_for_function("JSON.parse(document.getElementById('preview').dataset.request).codes.c2 === 0.5")
    assert page.generate_bodies[-1]["codes"]["c2"] == 0.5
    page.wait_for_function("document.getElementById('preview').complete")
    assert page.evaluate(PIXELS) != first
    assert len(page.generate_bodies) < 12  # debounced: not one request per key press


def test_categorical_control_lists_the_labels_in_order_and_sends_their_values(page, client):
    labels = client.get("/info").json()["codes"][0]["labels"]
    options = page.locator("#code-c1 option")
    assert options.all_text_contents() == sorted(labels, key=int)  # 0-9, whatever value each digit has
    page.locator("#code-c1").select_option(label="7")
    page.wait_for_function(f"JSON.parse(document.getElementById('preview').dataset.request).codes.c1 === {labels.index('7')}")


def test_the_page_works_under_its_own_content_security_policy(browser, shipped_server):
    context = browser.new_context()
    try:
        page = context.new_page()
        violations = []
        page.on("console", lambda message: violations.append(message.text)
                if "Content Security Policy" in message.text else None)
        page.goto(shipped_server.url + "/")
        expect(page.locator("#model-line")).to_contain_text("running on")
        for _ in range(100):
            if page.locator("#preview").evaluate("image => image.naturalWidth") > 0:
                break
            page.wait_for_timeout(100)
        assert page.locator("#preview").evaluate("image => image.naturalWidth") > 0 and violations == []
    finally:
        context.close()


def test_sliders_carry_the_shipped_models_code_names(browser, shipped_server, tmp_path):
    """Also the README's picture: PLAYGROUND_SCREENSHOT=docs/playground.png pytest tests/test_playground.py -k shipped"""
    context = browser.new_context(viewport={"width": 1000, "height": 1400}, bypass_csp=True)
    try:
        page = context.new_page()
        page.goto(shipped_server.url + "/")
        page.wait_for_function("document.getElementById('preview').naturalWidth > 0")
        page.get_by_label("slant", exact=True).fill("1")
        page.wait_for_function("JSON.parse(document.getElementById('preview').dataset.request).codes.slant === 1")
        assert page.get_by_label("thickness", exact=True).is_visible()
        low, high = httpx.get(shipped_server.url + "/info").json()["traverse_range"]  # where the digit is kept
        assert [float(page.get_by_label("slant", exact=True).get_attribute(a)) for a in ("min", "max")] == [low, high]
        assert page.locator("#traverse-code option").all_text_contents() == ["c1 (categorical)", "slant", "thickness"]
        page.locator("#traverse-code").select_option(label="thickness")
        page.get_by_role("button", name="Show traversal").click()
        page.wait_for_function("document.getElementById('traverse-grid').naturalWidth > 0")
        screenshot = Path(os.environ.get("PLAYGROUND_SCREENSHOT") or tmp_path / "playground.png")
        page.screenshot(path=screenshot, full_page=True)
        assert screenshot.stat().st_size > 10_000
    finally:
        context.close()


def test_traversal_pins_the_other_codes(page):
    page.get_by_label("c3 (continuous)").fill("1")
    with page.expect_request(lambda r: "/traverse?" in r.url) as request:
        page.get_by_role("button", name="Show traversal").click()
    assert "code=c1" in request.value.url and "c3=1" in request.value.url
    page.wait_for_function("document.getElementById('traverse-grid').naturalWidth > 0")
    assert page.locator("#traverse-grid").is_visible()


def test_draw_encode_and_load_codes(page):
    box = page.locator("#canvas").bounding_box()
    page.mouse.move(box["x"] + 140, box["y"] + 40)
    page.mouse.down()
    page.mouse.move(box["x"] + 140, box["y"] + 240, steps=12)
    page.mouse.up()
    with page.expect_response(lambda r: r.url.endswith("/encode")) as response:
        page.get_by_role("button", name="Encode").click()
    encoded = response.value.json()
    expect(page.locator("#encode-result")).to_contain_text(f"label: {encoded['label']}")
    page.get_by_role("button", name="Load these codes into the controls").click()
    low, high = page.evaluate("info.traverse_range")  # the sliders' range
    snapped = round(max(low, min(high, encoded["codes"]["c2"])) / 0.05) * 0.05 + 0.0  # the slider's step; no "-0.00"
    expected = f"{snapped:.2f}"
    expect(page.locator("#value-c2")).to_have_text(expected)
    expect(page.locator("#code-c1")).to_have_value(str(encoded["codes"]["c1"]["value"]))


def test_api_errors_are_shown(page):
    page.locator("#count").fill("100")
    expect(page.locator("#error")).to_contain_text("422")
    expect(page.locator("#error")).to_contain_text("n")


def test_phone_viewport_keeps_the_controls_on_screen(browser, server):
    context = browser.new_context(viewport={"width": 375, "height": 740}, has_touch=True, is_mobile=True,
                                  bypass_csp=True)
    page = context.new_page()
    page.goto(server.url + "/")
    page.wait_for_function("document.getElementById('preview').naturalWidth > 0")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375
    context.close()


@pytest.fixture(scope="module")
def keyed_server(model_dir):
    from tests.conftest import Server

    live = Server(model_dir, WORKERS="1", API_KEY="s3cret")
    yield live
    live.stop()


@pytest.fixture()
def offline(browser):
    """A browser context whose every request off this machine fails, as on an air-gapped network."""
    context = browser.new_context(bypass_csp=True)
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith("http://127.0.0.1:")
                  else route.abort("internetdisconnected"))
    yield context
    context.close()


def test_the_docs_render_offline_and_can_send_the_api_key(offline, keyed_server):
    page = offline.new_page()
    page.goto(keyed_server.url + "/docs")
    expect(page.locator(".swagger-ui .opblock-summary-path").first).to_be_visible(timeout=20_000)
    expect(page.locator(".swagger-ui .btn.authorize")).to_be_visible()  # the bearer scheme: "Authorize"
    page.locator(".swagger-ui .btn.authorize").click()
    page.locator(".swagger-ui .modal-ux input").fill("s3cret")
    page.locator(".swagger-ui .modal-ux .auth-btn-wrapper .authorize").click()
    page.locator(".swagger-ui .modal-ux .btn-done").click()
    page.locator("#operations-default-info_info_get .opblock-summary").click()
    page.get_by_role("button", name="Try it out").click()
    with page.expect_response(lambda r: r.url.endswith("/info")) as answer:
        page.get_by_role("button", name="Execute").click()
    assert answer.value.status == 200  # Swagger UI sent the key
    page.goto(keyed_server.url + "/redoc")
    expect(page.locator("h1").first).to_contain_text("infogan-serve", timeout=20_000)
    expect(page.get_by_text("The model, its codes and the request limits").first).to_be_visible()


def test_the_playground_asks_for_the_key_and_keeps_it_for_the_tab(offline, keyed_server):
    page = offline.new_page()
    page.goto(keyed_server.url + "/")
    expect(page.locator("#key-form")).to_be_visible()
    page.get_by_label("This service needs its API key").fill("s3cret")
    page.get_by_role("button", name="Use key").click()
    expect(page.locator("#model-line")).to_contain_text("running on")
    page.wait_for_function("document.getElementById('preview').naturalWidth > 0")
    assert page.evaluate("sessionStorage.getItem('infogan-api-key')") == "s3cret"
    assert page.evaluate("localStorage.length") == 0  # nothing kept beyond the tab
    page.reload()
    expect(page.locator("#model-line")).to_contain_text("running on")  # the same tab: no second question
    assert page.locator("#key-form").is_hidden()
    fresh = offline.new_page()  # another tab asks again
    fresh.goto(keyed_server.url + "/")
    expect(fresh.locator("#key-form")).to_be_visible()


def test_the_model_picker_switches_every_request_to_the_chosen_model(browser, model_dir, tmp_path):
    from tests.conftest import ROOT, Server

    shutil.copytree(ROOT / "models" / "mnist", tmp_path / "mnist")
    shutil.copytree(model_dir, tmp_path / "tiny")
    live = Server(None, MODEL_REPOSITORY=str(tmp_path), WORKERS="1")
    context = browser.new_context(viewport={"width": 1000, "height": 1400}, bypass_csp=True)
    try:
        page = context.new_page()
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(live.url + "/")
        picker = page.get_by_label("Model")
        expect(picker).to_have_value("mnist")
        expect(page.get_by_label("slant", exact=True)).to_be_visible()
        tiny = httpx.get(live.url + "/info", params={"model": "tiny"}).json()["model"]["name"]
        picker.select_option("tiny")
        expect(page.locator("#model-line")).to_contain_text(tiny)
        expect(page.get_by_label("c2 (continuous)")).to_be_visible()  # the tiny model's own, unnamed codes
        expect(page.get_by_label("slant", exact=True)).to_have_count(0)
        page.wait_for_function("document.getElementById('preview').naturalWidth > 0")
        assert any(url.endswith("/generate?model=tiny") for url in requests)
    finally:
        context.close()
        live.stop()
