"""One real browser: headless Chromium uploads a photo to the page served by `streamlit run`, turns
on the heatmap overlay, and, at a phone's size, takes a photo with a camera fed from a fixture; in
phone mode it types the pass phrase first.

SKIN_SCREENSHOTS=1 also writes docs/screenshot-desktop.png, docs/screenshot-phone.png,
docs/screenshot-overlay.png and docs/screenshot-refused.png of a photo the gate refuses.
"""
from __future__ import annotations

import base64
import io
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait
from test_frontend_page import served_answer, served_explanation
from test_gate import darkened, lesion

import settings
from contract.classes import BY_CODE, CLASSES
from frontend.access import PASS_PHRASE_VARIABLE, PHRASE_FIELD, new_pass_phrase
from frontend.explanation import Explanation
from frontend.overlay import overlay
from frontend.photo import prepare_photo
from frontend.texts import ENGLISH
from serve.certificate import ensure_certificate
from serve.launcher import wait_for_page
from serve.page import page_environment, streamlit_command
from serve.processes import stop_process
from serve.torchserve import free_port, read_properties

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PHOTO = settings.REPO / "tests" / "fixtures" / "images" / "MEL_ISIC_0024310.jpg"
DESKTOP = (1280, 900)
PHONE = (390, 844)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent: "
                       "apt-get install -y chromium chromium-driver"),
]


@pytest.fixture
def page_url(torchserve, inference_url) -> str:
    """The page from a real `streamlit run`, pointed at the session's TorchServe."""
    port = free_port()
    environment = page_environment({"SKIN_INFERENCE_URL": inference_url,
                                    "SKIN_KEY_FILE": str(torchserve.key_file)})
    page = subprocess.Popen(streamlit_command(port), cwd=settings.REPO, env=environment,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_page(page, port, None)
        yield f"http://localhost:{port}"
    finally:
        stop_process(page)


def write_y4m(photo: Path, path: Path, size: tuple[int, int] = (640, 480)) -> Path:
    """A one-frame YUV4MPEG2 video of ``photo``, which Chromium plays as its fake camera."""
    frame = Image.open(photo).convert("RGB").resize(size, Image.Resampling.LANCZOS)
    luma, blue, red = frame.convert("YCbCr").split()
    half = (size[0] // 2, size[1] // 2)
    planes = [luma] + [plane.resize(half, Image.Resampling.BOX) for plane in (blue, red)]
    path.write_bytes(f"YUV4MPEG2 W{size[0]} H{size[1]} F30:1 Ip A1:1 C420jpeg\n".encode() + b"FRAME\n"
                     + b"".join(plane.tobytes() for plane in planes))
    return path


def chromium(tmp_path: Path, *extra: str) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                 f"--window-size={DESKTOP[0]},{DESKTOP[1]}", *extra):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


@pytest.fixture
def browser(tmp_path) -> webdriver.Chrome:
    driver = chromium(tmp_path)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def camera_browser(tmp_path) -> webdriver.Chrome:
    """Chromium whose camera shows a fixture photo, with the permission prompt answered yes."""
    video = write_y4m(PHOTO, tmp_path / "lesion.y4m")
    driver = chromium(tmp_path, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                      f"--use-file-for-fake-video-capture={video}")
    try:
        yield driver
    finally:
        driver.quit()


def shows(text: str):
    return lambda driver: text in driver.find_element(By.TAG_NAME, "body").text


def shown_image(driver: webdriver.Chrome) -> bytes:
    """The picture in the page's photo column, fetched by the browser from Streamlit as it shows it."""
    source = driver.find_element(By.CSS_SELECTOR, '[data-testid="stImage"] img').get_attribute("src")
    encoded = driver.execute_async_script("""
        const [source, done] = arguments;
        fetch(source).then(r => r.arrayBuffer()).then(buffer => {
            let text = "";
            for (const byte of new Uint8Array(buffer)) text += String.fromCharCode(byte);
            done(btoa(text));
        });""", source)
    return base64.b64decode(encoded)


def pixels(image: bytes | Image.Image, size: tuple[int, int] | None = None) -> np.ndarray:
    picture = Image.open(io.BytesIO(image)) if isinstance(image, bytes) else image
    picture = picture.convert("RGB")
    return np.asarray(picture.resize(size) if size else picture, dtype=float)


def click_text(driver: webdriver.Chrome, element: str, text: str) -> None:
    WebDriverWait(driver, 60).until(expected_conditions.element_to_be_clickable(
        (By.XPATH, f"//{element}[contains(., '{text}')]"))).click()


def expected_top(answer: dict) -> str:
    top = answer["predictions"][0]
    return f"{BY_CODE[top['code']].name}: {top['probability']:.0%}"


def screenshot(driver: webdriver.Chrome, path: Path, size: tuple[int, int], mobile: bool) -> None:
    """The page at ``size`` CSS pixels, grown to the height of its content."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": size[0], "height": size[1], "deviceScaleFactor": 2 if mobile else 1,
        "mobile": mobile})
    time.sleep(1)  # let Streamlit re-lay out the page, the chart included, for the new width
    content = driver.execute_script(
        "return document.querySelector('[data-testid=\"stMainBlockContainer\"] > div')"
        ".getBoundingClientRect().bottom")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": size[0], "height": max(size[1], round(content) + 48),
        "deviceScaleFactor": 2 if mobile else 1, "mobile": mobile})
    time.sleep(1)
    driver.save_screenshot(str(path))


def test_upload_in_a_real_browser(page_url, browser, torchserve, inference_url, tmp_path):
    body = prepare_photo(PHOTO.read_bytes()).body
    answer = served_answer(torchserve, inference_url, body).json()

    started = time.monotonic()
    browser.get(page_url)
    upload = WebDriverWait(browser, 60).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "input[type=file]")))
    upload.send_keys(str(PHOTO))
    WebDriverWait(browser, 90).until(shows(expected_top(answer)))
    print(f"\npage load to result shown: {time.monotonic() - started:.1f}s")
    assert "This is not a diagnosis" in browser.find_element(By.TAG_NAME, "body").text

    browser.save_screenshot(str(tmp_path / "desktop.png"))
    screenshots = os.environ.get("SKIN_SCREENSHOTS") == "1"
    if screenshots:
        screenshot(browser, tmp_path / "screenshot-desktop.png", DESKTOP, mobile=False)
        screenshot(browser, tmp_path / "screenshot-phone.png", PHONE, mobile=True)

    # The overlay the browser shows is the heatmap of this photo over the model's own frame.
    explanation = Explanation.from_response(served_explanation(torchserve, inference_url, body))
    click_text(browser, "label", "Show what the model looked at")
    WebDriverWait(browser, 90).until(shows(f"counted most towards {explanation.lesion.name}"))
    shown, drawn = pixels(shown_image(browser)), pixels(overlay(body, explanation))
    assert shown.shape == drawn.shape
    assert np.abs(shown - drawn).mean() < 1
    if screenshots:
        screenshot(browser, tmp_path / "screenshot-overlay.png", DESKTOP, mobile=False)
        for name in ("screenshot-desktop.png", "screenshot-phone.png", "screenshot-overlay.png"):
            shutil.copy(tmp_path / name, settings.REPO / "docs" / name)


def test_phone_mode_classifies_after_the_pass_phrase(torchserve, inference_url, tmp_path):
    """Everything the page needs (its WebSocket, Streamlit's cookies, the upload) passes the gate
    once the phrase is typed."""
    tls = ensure_certificate(tmp_path / "tls", "127.0.0.1")
    phrase, port = new_pass_phrase(), free_port()
    environment = page_environment({"SKIN_INFERENCE_URL": inference_url, PASS_PHRASE_VARIABLE: phrase,
                                    "SKIN_KEY_FILE": str(torchserve.key_file)})
    page = subprocess.Popen(streamlit_command(port, tls), cwd=settings.REPO, env=environment,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # The certificate names 127.0.0.1 and chains to a CA this throwaway profile does not hold.
    driver = chromium(tmp_path, "--ignore-certificate-errors")
    try:
        wait_for_page(page, port, tls)
        answer = served_answer(torchserve, inference_url, prepare_photo(PHOTO.read_bytes()).body).json()
        driver.get(f"https://127.0.0.1:{port}/")
        field = WebDriverWait(driver, 60).until(expected_conditions.presence_of_element_located(
            (By.NAME, PHRASE_FIELD)))
        field.send_keys(phrase + Keys.ENTER)
        upload = WebDriverWait(driver, 60).until(
            expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "input[type=file]")))
        upload.send_keys(str(PHOTO))
        WebDriverWait(driver, 90).until(shows(expected_top(answer)))
    finally:
        driver.quit()
        stop_process(page)


def test_camera_photo_at_phone_size(page_url, camera_browser, torchserve, inference_url):
    camera_browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": PHONE[0], "height": PHONE[1], "deviceScaleFactor": 2, "mobile": True})
    camera_browser.get(page_url)
    click_text(camera_browser, "button", "Use the camera")
    click_text(camera_browser, "button", "Take Photo")
    WebDriverWait(camera_browser, 90).until(shows("Most likely"))

    # The photo the page sent, as it shows it: of the fixtures, the one the fake camera plays.
    sent = shown_image(camera_browser)
    picture = pixels(sent)
    assert picture.shape == (480, 640, 3)
    distance = {path.name: np.abs(picture - pixels(path.read_bytes(), (640, 480))).mean()
                for path in PHOTO.parent.glob("*.jpg")}
    assert min(distance, key=distance.get) == PHOTO.name, distance
    answer = served_answer(torchserve, inference_url, sent).json()
    WebDriverWait(camera_browser, 30).until(shows(expected_top(answer)))


def test_a_refused_photo_in_a_real_browser(page_url, browser, torchserve, inference_url, fixture_images,
                                           tmp_path):
    photo = tmp_path / "dark.jpg"
    photo.write_bytes(darkened(lesion(fixture_images)))
    answer = served_answer(torchserve, inference_url, prepare_photo(photo.read_bytes()).body).json()
    assert answer["gate"]["reason"] == "too_dark"

    browser.get(page_url)
    upload = WebDriverWait(browser, 60).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "input[type=file]")))
    upload.send_keys(str(photo))
    # The title and the reason are drawn one after the other: wait for both.
    WebDriverWait(browser, 90).until(shows(ENGLISH.refused_title))
    WebDriverWait(browser, 30).until(shows(ENGLISH.refusals["too_dark"]))
    text = browser.find_element(By.TAG_NAME, "body").text
    assert not any(c.name in text for c in CLASSES)
    if os.environ.get("SKIN_SCREENSHOTS") == "1":
        screenshot(browser, tmp_path / "screenshot-refused.png", DESKTOP, mobile=False)
        shutil.copy(tmp_path / "screenshot-refused.png", settings.REPO / "docs" / "screenshot-refused.png")


def test_the_page_takes_files_up_to_torchserves_request_limit(page_url, browser, tmp_path):
    limit = int(read_properties(settings.TORCHSERVE_CONFIG)["max_request_size"])
    browser.get(page_url)
    WebDriverWait(browser, 60).until(shows(f"{limit // 2**20}MB per file"))
    too_large = tmp_path / "too-large.jpg"
    too_large.write_bytes(b"\xff" * (limit + 2**20))
    browser.find_element(By.CSS_SELECTOR, 'input[type="file"]').send_keys(str(too_large))
    # Streamlit refuses it in the browser, instead of TorchServe answering 413 after the upload.
    WebDriverWait(browser, 60).until(shows(f"File must be {limit / 2**20:.1f}MB or smaller"))
