"""The live pages in real headless Chromium (Debian packages chromium and chromium-driver).

In CI (CI=true) a missing browser fails the test instead of skipping it. A screenshot of each
page is saved under test-artifacts/.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from newswatch.api import create_app
from newswatch.config import Settings
from newswatch.store.columns import utcnow
from tests.api_support import Running, load_corpus, replay_corpus, running
from tests.conftest import skip_or_fail

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
PHONE = (412, 915)


def _browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    skip_or_fail("chromium and chromedriver are needed (apt-get install chromium chromium-driver)")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    chromium, driver_path = _browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    options.add_argument(f"--window-size={PHONE[0]},{PHONE[1]}")
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def corpus_site(sqlite_engine: Engine) -> Iterator[tuple[Running, dict[str, int], list[dict]]]:
    rows = load_corpus()
    events = replay_corpus(sqlite_engine, rows, end=utcnow() - timedelta(minutes=5))
    with running(create_app(sqlite_engine, Settings(_env_file=None))) as srv:  # type: ignore[call-arg]
        yield srv, events, rows


def screenshot(driver, name: str) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / name))


def test_live_page_shows_the_replayed_events(browser, corpus_site) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    srv, events, rows = corpus_site
    driver = browser
    driver.get(srv.base_url + "/")
    assert "Events" in driver.title

    items = driver.find_elements(By.CSS_SELECTOR, "li.event")
    assert len(items) == len(events) == 8
    # newest activity first: the event of the corpus's last row leads
    assert int(items[0].get_attribute("data-event-id")) == events[rows[-1]["event"]]

    per_event = Counter(r["event"] for r in rows)
    sources = {
        label: len({r["source"] for r in rows if r["event"] == label}) for label in per_event
    }
    by_id = {events[label]: label for label in events}
    for item in items:
        label = by_id[int(item.get_attribute("data-event-id"))]
        badge = item.find_element(By.CSS_SELECTOR, ".badge.sources").text
        assert badge.split()[0] == str(sources[label])
        ticks = item.find_elements(By.CSS_SELECTOR, "svg.timeline rect.tick")
        assert len(ticks) == per_event[label]

    # articles are one click away
    first = items[0]
    link = first.find_element(By.CSS_SELECTOR, "details ul.articles a")
    assert not link.is_displayed()
    first.find_element(By.CSS_SELECTOR, "details summary").click()
    assert link.is_displayed()
    titles = {r["title"] for r in rows if r["event"] == rows[-1]["event"]}
    assert link.text in titles

    # readable on a phone: nothing wider than the screen
    overflow = driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0
    screenshot(driver, "live-page-phone.png")

    first.find_element(By.CSS_SELECTOR, "a.title").click()
    shown = driver.find_elements(By.CSS_SELECTOR, "ul.articles li")
    assert len(shown) == per_event[rows[-1]["event"]]
    screenshot(driver, "event-page-phone.png")


def test_source_health_page(browser, corpus_site) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    srv, _events, rows = corpus_site
    browser.get(srv.base_url + "/sources")
    names = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "li.source .name")]
    assert sorted(names) == sorted({r["source"] for r in rows})
    screenshot(browser, "sources-page-phone.png")
