"""cryosift review in a real browser: Debian's chromium, headless, driven by selenium through chromedriver.

Sort the gallery, grade three classes with the keyboard, reload, and find the grades kept.
Skipped only where chromium or its driver is absent (.ci/run installs both).
"""

import os
import shutil
import threading

import pandas as pd
import pytest

from cryosift.review import create_app
from tests.review_data import make_results

CHROMEDRIVER = "/usr/bin/chromedriver"
pytestmark = pytest.mark.skipif(shutil.which("chromium") is None or not os.path.exists(CHROMEDRIVER),
                                reason="Debian's chromium and chromium-driver are not installed")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from werkzeug.serving import make_server

    results = make_results(tmp_path_factory.mktemp("browser"))
    app = create_app(results)
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/", results
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1400,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)  # Debian's driver, no download
    yield driver
    driver.quit()


def tiles(driver):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, "#gallery .tile")


def wait_for(driver, condition, timeout=30):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: condition())


def test_sort_grade_with_the_keyboard_and_reload(server, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    url, results = server
    browser.get(url)
    scores = pd.read_csv(results / "score/ds1/final/scores.csv")
    wait_for(browser, lambda: len(tiles(browser)) == len(scores))
    assert "final" in browser.find_element(By.CSS_SELECTOR, "nav button.active").text
    by_score = scores.sort_values(["score", "class"])["class"].tolist()
    assert [int(t.get_attribute("data-class")) for t in tiles(browser)] == by_score

    Select(browser.find_element(By.ID, "sort")).select_by_value("particles")
    largest_first = scores.assign(neg=-scores["particles"]).sort_values(["neg", "class"])["class"].tolist()
    wait_for(browser, lambda: [int(t.get_attribute("data-class")) for t in tiles(browser)] == largest_first)

    # Grade the three largest classes: a key grades the selected class and moves to the next.
    for key in ("a", "3", "f"):
        ActionChains(browser).send_keys(key).perform()
    grades_csv = results / "review" / "grades.csv"
    wait_for(browser, lambda: grades_csv.exists() and len(pd.read_csv(grades_csv)) == 3)
    expected = dict(zip(largest_first[:3], ["A", "3", "F"]))
    table = pd.read_csv(grades_csv, dtype=str)
    assert dict(zip(table["class"].astype(int), table["grade"])) == expected

    # The detail view of the selected (fourth) class: enlarged image, features, particles kept per cutoff.
    ActionChains(browser).send_keys("\ue007").perform()  # Enter
    detail = browser.find_element(By.ID, "detail")
    wait_for(browser, detail.is_displayed)
    assert f"class {largest_first[3]}" in browser.find_element(By.ID, "detail-title").text
    kept_rows = browser.find_elements(By.CSS_SELECTOR, "#detail-kept tr")
    assert [r.text.split()[2] for r in kept_rows[1:]] == ["2.5", "3.5", "4.5"]
    ActionChains(browser).send_keys("\ue00c").perform()  # Escape
    wait_for(browser, lambda: not detail.is_displayed())

    browser.refresh()
    wait_for(browser, lambda: len(tiles(browser)) == len(scores))
    shown = {int(t.get_attribute("data-class")): t.find_element(By.CSS_SELECTOR, ".grade").text for t in tiles(browser)}
    assert {c: g for c, g in shown.items() if g} == expected
