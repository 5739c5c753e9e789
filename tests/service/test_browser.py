"""The page of `simclr serve` in a real browser: Debian's headless chromium driven by Playwright.

It searches by a photo, then by a result, changes k, goes back through the history, opens the near-duplicates
tab, shows the server's error for a file that is not an image and fits a phone's width. The server comes from
the ``live_server`` fixture (its base URL), the query photo from ``query_image`` (tests/service/conftest.py).
No browser is ever downloaded: without /usr/bin/chromium the tests skip, but under CI they fail (.ci/run
installs it). ``SIMCLR_SCREENSHOT=shot.png`` saves full-page screenshots: shot.png (results),
shot-duplicates.png and shot-phone.png.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NoReturn

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
K = 12
TIMEOUT_MS = 30_000  # the first search loads the model and index on a cold server


def _missing(reason: str) -> NoReturn:
    """Skip on a developer's machine; fail under CI, where the browser must be there."""
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(f"{reason}: CI must run the browser tests (.ci/run installs Debian's chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[test]')")
    if not CHROMIUM.is_file():
        _missing(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                              args=["--no-sandbox", "--headless=new"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser, live_server):
    """A fresh page at 1280x900 on the live server; it fails the test on a script error or on a request
    that leaves the server (the page must fetch nothing from elsewhere)."""
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    problems: list[str] = []
    base = live_server.rstrip("/")

    def outside(request) -> None:
        if not request.url.startswith((base + "/", "blob:", "data:")):
            problems.append(f"request outside the server: {request.url}")

    tab.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    tab.on("request", outside)
    tab.goto(base + "/")
    yield tab
    context.close()
    assert not problems, problems


def _ids(page) -> list[int]:
    """The ids of the results on show, best first."""
    ids = page.locator("#results .result").evaluate_all("cards => cards.map(card => card.dataset.id)")
    return [int(i) for i in ids]


def _screenshot(page, suffix: str = "") -> None:
    target = os.environ.get("SIMCLR_SCREENSHOT")
    if target:
        path = Path(target)
        page.screenshot(path=str(path.with_name(path.stem + suffix + path.suffix)), full_page=True)


def _settled(page):
    """Wait until the search in flight (if any) has answered and its results are on show."""
    from playwright.sync_api import expect

    expect(page.locator("#results")).to_have_attribute("aria-busy", "false")


def test_search_by_photo_then_by_result(page, query_image):
    from playwright.sync_api import expect

    expect(page.locator("#stats")).to_contain_text("images")
    expect(page.locator("#k")).to_have_value(str(K))
    page.set_input_files("#file-input", str(query_image))
    expect(page.locator("#results .result")).to_have_count(K)
    _settled(page)
    expect(page.locator("#query-preview")).to_be_visible()
    first = _ids(page)
    card = page.locator("#results .result").first
    expect(card.locator("img")).to_have_attribute("src", f"/api/images/{first[0]}?size=192")
    expect(card.locator(".score")).to_have_text(re.compile(r"^-?\d\.\d{3}$"))
    expect(page.locator("#error")).to_be_hidden()
    _screenshot(page)

    card.click()  # search by the first result: it becomes the query and leaves the results
    expect(page.locator("#query-preview")).to_have_attribute("data-id", str(first[0]))
    expect(page.locator("#query-preview")).to_have_attribute("src", f"/api/images/{first[0]}?size=256")
    _settled(page)
    expect(page.locator("#results .result")).to_have_count(K)
    second = _ids(page)
    assert first[0] not in second and second[0] != first[0]
    expect(page.locator("#history .crumb")).to_have_count(2)

    page.select_option("#k", "24")  # more results for the same query
    expect(page.locator("#results .result")).to_have_count(24)
    _settled(page)
    expect(page.locator("#query-preview")).to_have_attribute("data-id", str(first[0]))
    expect(page.locator("#history .crumb")).to_have_count(2)
    page.select_option("#k", str(K))
    expect(page.locator("#results .result")).to_have_count(K)
    _settled(page)

    page.locator("#history .crumb").first.click()  # back to the photo
    _settled(page)
    expect(page.locator("#history .crumb")).to_have_count(1)
    expect(page.locator("#query-preview")).to_have_attribute("src", re.compile(r"^blob:"))
    assert page.locator("#query-preview").get_attribute("data-id") is None
    assert _ids(page)[:K] == first


def test_duplicates_tab(page):
    from playwright.sync_api import expect

    page.click("#tab-duplicates")
    expect(page.locator("#duplicates")).to_be_visible()
    groups = page.locator("#duplicates .group")
    expect(groups.first).to_be_visible()  # past the 202 "computing" answers, if any
    expect(page.locator("#duplicates")).to_have_attribute("aria-busy", "false")
    first = groups.first
    assert first.locator(".dup").count() >= 2
    expect(first.locator(".dup").first.locator(".badge")).to_have_text("keep")
    expect(first.locator(".dup").nth(1).locator(".badge")).to_have_text(re.compile(r"^\d\.\d{3}$"))
    _screenshot(page, "-duplicates")

    kept = first.locator(".dup").first.get_attribute("data-id")
    first.locator(".dup").first.click()  # a group's photo is a query of the search tab
    expect(page.locator("#results")).to_be_visible()
    expect(page.locator("#query-preview")).to_have_attribute("data-id", kept)
    expect(page.locator("#results .result")).to_have_count(K)


def test_not_an_image_shows_the_error(page, live_server, tmp_path):
    from playwright.sync_api import expect

    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo\n" * 20)
    answer = httpx.post(f"{live_server.rstrip('/')}/api/search?k={K}", timeout=TIMEOUT_MS / 1000,
                        files={"image": ("notes.txt", notes.read_bytes())})  # what the server says of it
    assert answer.status_code == 415, answer.text
    message = f"{answer.json()['error']} (415)"

    page.set_input_files("#file-input", str(notes))
    alert = page.locator("#error")
    expect(alert).to_be_visible()
    expect(alert).to_have_attribute("role", "alert")
    expect(alert).to_contain_text(message)
    expect(page.locator("#results .result")).to_have_count(0)
    expect(page.locator("#query-preview")).to_be_hidden()  # no broken preview of the rejected file
    page.click("#error-close")
    expect(alert).to_be_hidden()


def test_phone_width(page, query_image):
    """At a phone's width the page stacks: nothing wider than the screen."""
    from playwright.sync_api import expect

    page.set_viewport_size({"width": 390, "height": 844})
    page.set_input_files("#file-input", str(query_image))
    expect(page.locator("#results .result")).to_have_count(K)
    _settled(page)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    _screenshot(page, "-phone")
