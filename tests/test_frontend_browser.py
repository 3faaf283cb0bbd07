"""One real browser: headless Chromium uploads a photo to the page served by `streamlit run`.

SKIN_SCREENSHOTS=1 also writes docs/screenshot-desktop.png and docs/screenshot-phone.png, and
docs/screenshot-refused.png of a photo the gate refuses.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from frontend.photo import prepare_photo
from frontend.run import REPO, page_environment, streamlit_command
from frontend.serve_all import stop_page, wait_for_page
from frontend.texts import ENGLISH
from handler.classes import BY_CODE, CLASSES
from test_frontend_page import served_answer
from test_gate import darkened, lesion
from tools.torchserve import free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PHOTO = REPO / "tests" / "fixtures" / "images" / "MEL_ISIC_0024310.jpg"
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
    page = subprocess.Popen(streamlit_command(port), cwd=REPO, env=environment,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_page(page, port, None)
        yield f"http://localhost:{port}"
    finally:
        stop_page(page)


@pytest.fixture
def browser(tmp_path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                 f"--window-size={DESKTOP[0]},{DESKTOP[1]}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def shows(text: str):
    return lambda driver: text in driver.find_element(By.TAG_NAME, "body").text


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
    answer = served_answer(torchserve, inference_url, prepare_photo(PHOTO.read_bytes()).body).json()
    top = answer["predictions"][0]
    expected = f"{BY_CODE[top['code']].name}: {top['probability']:.0%}"

    started = time.monotonic()
    browser.get(page_url)
    upload = WebDriverWait(browser, 60).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "input[type=file]")))
    upload.send_keys(str(PHOTO))
    WebDriverWait(browser, 90).until(shows(expected))
    print(f"\npage load to result shown: {time.monotonic() - started:.1f}s")
    assert "This is not a diagnosis" in browser.find_element(By.TAG_NAME, "body").text

    browser.save_screenshot(str(tmp_path / "desktop.png"))
    if os.environ.get("SKIN_SCREENSHOTS") == "1":
        screenshot(browser, tmp_path / "screenshot-desktop.png", DESKTOP, mobile=False)
        screenshot(browser, tmp_path / "screenshot-phone.png", PHONE, mobile=True)
        for name in ("screenshot-desktop.png", "screenshot-phone.png"):
            shutil.copy(tmp_path / name, REPO / "docs" / name)


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
    WebDriverWait(browser, 90).until(shows(ENGLISH.refused_title))
    text = browser.find_element(By.TAG_NAME, "body").text
    assert ENGLISH.refusals["too_dark"] in text
    assert not any(c.name in text for c in CLASSES)
    if os.environ.get("SKIN_SCREENSHOTS") == "1":
        screenshot(browser, tmp_path / "screenshot-refused.png", DESKTOP, mobile=False)
        shutil.copy(tmp_path / "screenshot-refused.png", REPO / "docs" / "screenshot-refused.png")
