"""The live pages in real headless Chromium (Debian packages chromium and chromium-driver):
reading, searching, paging, acknowledging, the event page, and an accessibility check with
axe-core (vendored in tests/fixtures/axe, MPL-2.0).

In CI (CI=true) a missing browser fails the test instead of skipping it. Screenshots are
kept as artifacts in $NEWSWATCH_ARTIFACTS when set, else in `artifacts/` under pytest's
temporary directory (decision 0199).
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, update

from newswatch.api import create_app
from newswatch.config import Settings
from newswatch.store.columns import utcnow
from newswatch.store.db import session_scope
from newswatch.store.models import Article, table_of
from newswatch.store.search import index_articles
from tests.api_support import Running, load_corpus, replay_corpus, running
from tests.conftest import skip_or_fail

AXE = Path(__file__).parent / "fixtures" / "axe" / "axe.min.js"
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
DESKTOP = (1100, 900)
ARTICLES = table_of(Article)


def _browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    skip_or_fail("chromium and chromedriver are needed (apt-get install chromium chromium-driver)")


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("NEWSWATCH_ARTIFACTS")
    folder = Path(chosen) if chosen else tmp_path_factory.getbasetemp() / "artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


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
def corpus_site(engine: Engine) -> Iterator[tuple[Running, dict[str, int], list[dict]]]:
    rows = load_corpus()
    events = replay_corpus(engine, rows, end=utcnow() - timedelta(minutes=5))
    with session_scope(engine) as session:  # leads and explanations to read
        session.execute(
            update(ARTICLES).values(
                group_explain={"stage": "similar", "score": 0.42},
                text="The report's opening paragraph, as the page extraction stored it. " * 8,
                language="en",
            )
        )
        openers = select(func.min(ARTICLES.c.id)).group_by(ARTICLES.c.event_id)
        session.execute(
            update(ARTICLES)
            .where(ARTICLES.c.id.in_(openers))
            .values(group_explain={"stage": "new", "score": 0.0})
        )
        index_articles(session)  # the text written above dropped their search entries
    with running(create_app(engine, Settings(_env_file=None))) as srv:  # type: ignore[call-arg]
        yield srv, events, rows


def screenshot(driver, folder: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    driver.save_screenshot(str(folder / name))


def click_and_load(driver, element) -> None:  # type: ignore[no-untyped-def]
    """Click a link or button that loads a page, and wait until the old page is gone."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    page = driver.find_element("tag name", "html")
    element.click()
    WebDriverWait(driver, 30).until(expected_conditions.staleness_of(page))


def event_ids(driver) -> list[int]:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    items = driver.find_elements(By.CSS_SELECTOR, "li.event")
    return [int(i.get_attribute("data-event-id")) for i in items]


def no_overflow(driver) -> bool:  # type: ignore[no-untyped-def]
    """Readable on a phone: nothing wider than the screen."""
    return driver.execute_script(  # type: ignore[no-any-return]
        "return document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )


def test_live_page_shows_the_replayed_events(browser, corpus_site, artifacts) -> None:  # type: ignore[no-untyped-def]
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
    assert no_overflow(driver)
    screenshot(driver, artifacts, "live-page-phone.png")


def test_search_and_paging(browser, corpus_site, artifacts) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    srv, events, rows = corpus_site
    driver = browser
    # search: the box filters to the events whose titles hold the word
    driver.get(srv.base_url + "/")
    word = "Gox"
    box = driver.find_element(By.CSS_SELECTOR, "form.filters input[name=q]")
    box.send_keys(word)
    click_and_load(driver, driver.find_element(By.CSS_SELECTOR, "form.filters button"))
    expected = {events[r["event"]] for r in rows if word.lower() in r["title"].lower()}
    assert expected and set(event_ids(driver)) == expected
    screenshot(driver, artifacts, "search-phone.png")

    # paging: three events a page, following "Next page" reaches every event once
    driver.get(srv.base_url + "/?sort=size&limit=3")
    seen: list[int] = []
    while True:
        seen += event_ids(driver)
        following = driver.find_elements(By.CSS_SELECTOR, "nav.pager a.next")
        if not following:
            break
        click_and_load(driver, following[0])
    assert sorted(seen) == sorted(events.values())
    sizes = {e: len({r["source"] for r in rows if events[r["event"]] == e}) for e in seen}
    assert [sizes[e] for e in seen] == sorted(sizes.values(), reverse=True)


def test_acknowledge_and_hide_seen(browser, corpus_site, artifacts) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    srv, events, _rows = corpus_site
    driver = browser
    driver.set_window_size(*DESKTOP)
    driver.get(srv.base_url + "/")
    first = driver.find_element(By.CSS_SELECTOR, "li.event")
    event_id = int(first.get_attribute("data-event-id"))
    click_and_load(driver, first.find_element(By.CSS_SELECTOR, "form.triage button[value=ack]"))
    # back on the list, the event shows as seen
    again = driver.find_element(By.CSS_SELECTOR, f'li.event[data-event-id="{event_id}"]')
    assert "seen" in again.get_attribute("class").split()
    assert again.find_element(By.CSS_SELECTOR, "form.triage button[value=unack]")
    screenshot(driver, artifacts, "triage-desktop.png")
    # "hide seen" leaves it out
    driver.find_element(By.CSS_SELECTOR, "input[name=hide_acknowledged]").click()
    click_and_load(driver, driver.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]"))
    assert set(event_ids(driver)) == set(events.values()) - {event_id}
    # the API agrees
    assert srv.get(f"/api/events/{event_id}").json()["acknowledged"] is not None


def test_event_page_reads_as_a_report_list(browser, corpus_site, artifacts) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    srv, events, rows = corpus_site
    driver = browser
    label = rows[-1]["event"]
    driver.get(srv.base_url + "/")
    title = f'li.event[data-event-id="{events[label]}"] a.title'
    click_and_load(driver, driver.find_element(By.CSS_SELECTOR, title))
    reports = driver.find_elements(By.CSS_SELECTOR, "ol.reports > li")
    assert len(reports) == sum(1 for r in rows if r["event"] == label)
    opener = reports[0]
    assert opener.find_element(By.CSS_SELECTOR, ".why").text == "opened the event"
    later = reports[1]
    assert later.find_element(By.CSS_SELECTOR, ".why").text.startswith("joined: similar")
    assert later.find_element(By.CSS_SELECTOR, "p.lead").text.startswith("The report's")
    assert later.find_element(By.CSS_SELECTOR, "time").get_attribute("datetime")
    click_and_load(driver, driver.find_element(By.CSS_SELECTOR, "form.triage button[value=star]"))
    assert driver.find_element(By.CSS_SELECTOR, "h1 .star")
    assert no_overflow(driver)
    screenshot(driver, artifacts, "event-page-phone.png")


def axe_violations(driver, impact: str) -> list[dict]:  # type: ignore[no-untyped-def]
    """axe-core's violations of the loaded page at `impact` ("critical", "serious", …)."""
    driver.execute_script(AXE.read_text(encoding="utf-8"))
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document).then(r => done(JSON.stringify(r.violations)))"
        ".catch(e => done(JSON.stringify({error: String(e)})));"
    )
    found = json.loads(result)
    assert isinstance(found, list), found
    return [v for v in found if v.get("impact") == impact]


def test_pages_have_no_critical_accessibility_violations(browser, corpus_site) -> None:  # type: ignore[no-untyped-def]
    srv, events, rows = corpus_site
    for path in ("/", f"/events/{events[rows[0]['event']]}", "/sources"):
        browser.get(srv.base_url + path)
        critical = axe_violations(browser, "critical")
        assert critical == [], (path, [(v["id"], v["help"]) for v in critical])
        serious = axe_violations(browser, "serious")
        assert serious == [], (path, [(v["id"], v["help"]) for v in serious])


def test_source_health_page(browser, corpus_site, artifacts) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    srv, _events, rows = corpus_site
    browser.get(srv.base_url + "/sources")
    names = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "li.source .name")]
    assert sorted(names) == sorted({r["source"] for r in rows})
    screenshot(browser, artifacts, "sources-page-phone.png")
