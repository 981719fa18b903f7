"""Issue 7, the seller's whole onboarding loop in a real browser: headless Chromium (Debian's
package, driven by Selenium through Debian's chromedriver) opens the link that
`POST /api/connect/accounts` returned, completes onboarding on the fake Stripe's hosted page,
follows the redirect to our return endpoint and ends on the marketplace page, which shows
"payments enabled". A second run starts from an expired link: the fake sends the browser to
our refresh endpoint, which mints a new link, and the loop still ends enabled."""

import struct
from urllib.parse import urlsplit

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from browser import WINDOW, headless_chromium, wait_through_navigation
from harness.api import make_profile


@pytest.fixture
def browser(tmp_path):
    with headless_chromium(tmp_path / "chromium-profile") as driver:
        yield driver


def create_account(stack, seller):
    response = stack.post("/api/connect/accounts", json={}, headers=seller["headers"])
    assert response.status_code == 201, response.text
    return response.json()


def links_of(stack, account):
    return [link for link in stack.stripe_control("GET", "/_control/account_links")["data"]
            if link["account"] == account]


def profile_flags(db, profile_id):
    return db.execute("SELECT charges_enabled, payouts_enabled, details_submitted FROM profiles WHERE id = %s",
                      (profile_id,)).fetchone()


def png_size(path):
    """(width, height) from a PNG's IHDR, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def screenshot(driver, path):
    assert driver.save_screenshot(str(path)), "the browser took no screenshot"
    assert path.is_file()
    return path


def complete_on_hosted_page(stack, driver, account):
    """On the fake's hosted page for `account`: press Complete and wait to leave it."""
    WebDriverWait(driver, 15).until(EC.presence_of_element_located((By.ID, "complete")))
    page_url = driver.current_url
    assert page_url.startswith(f"{stack.stripe.url}/setup/e/{account}/"), page_url
    assert account in driver.find_element(By.TAG_NAME, "body").text
    driver.find_element(By.ID, "complete").click()
    wait_through_navigation(driver, 20, lambda d: d.current_url.startswith(stack.app.env["APP_RETURN_URL"]))
    return page_url


def assert_marketplace_shows(stack, driver, outcome, text):
    expected = stack.app.env["APP_RETURN_URL"] + f"?onboarding={outcome}"
    assert driver.current_url == expected
    WebDriverWait(driver, 10).until(lambda d: text in d.find_element(By.ID, "result").text)
    body = driver.find_element(By.TAG_NAME, "body").text
    assert text in body, body
    return body


def assert_real_screenshot(driver, tmp_path, name):
    """The result page's screenshot is a PNG of the window, well above a blank page's."""
    shot = screenshot(driver, tmp_path / f"{name}.png")
    width, height = png_size(shot)
    assert width == WINDOW[0] and height >= WINDOW[1] // 2, (width, height)  # the viewport of the window
    size = shot.stat().st_size
    driver.get("about:blank")
    blank = screenshot(driver, tmp_path / f"{name}-blank.png")
    assert size > 4096 and size > 2 * blank.stat().st_size, (size, blank.stat().st_size)
    return shot


def test_browser_completes_onboarding(stack, db, browser, tmp_path):
    seller = make_profile(db, "seller")
    created = create_account(stack, seller)
    account = created["account_id"]
    retrieves_before = len(stack.stripe.received("GET", f"/v1/accounts/{account}"))

    browser.get(created["onboarding_url"])
    complete_on_hosted_page(stack, browser, account)
    body = assert_marketplace_shows(stack, browser, "complete", "payments enabled")
    assert "not enabled" not in body
    # The browser went through our return endpoint, which asked Stripe and synced the profile.
    assert len(stack.stripe.received("GET", f"/v1/accounts/{account}")) > retrieves_before
    assert profile_flags(db, seller["id"]) == (True, True, True)

    shot = assert_real_screenshot(browser, tmp_path, "onboarding-complete")
    print(f"screenshot: {shot} ({shot.stat().st_size} bytes)")


def test_browser_expired_link_goes_through_refresh(stack, db, browser, tmp_path):
    seller = make_profile(db, "seller")
    created = create_account(stack, seller)
    account = created["account_id"]
    expired = stack.stripe_control("POST", "/_control/account_links/expire", {"url": created["onboarding_url"]})
    assert expired["expired"] == 1, expired
    refreshes_before = len(stack.stripe.received("POST", "/v1/account_links"))

    browser.get(created["onboarding_url"])
    # The fake refused the expired link and sent the browser to our refresh endpoint, which
    # minted a new link: the hosted page now open is that new link's.
    page_url = complete_on_hosted_page(stack, browser, account)
    assert urlsplit(page_url).path != urlsplit(created["onboarding_url"]).path
    links = links_of(stack, account)
    assert len(links) == 2, links
    (old,) = [link for link in links if link["url"] == created["onboarding_url"]]
    (new,) = [link for link in links if link["url"] != created["onboarding_url"]]
    assert old["used"] is False and new["used"] is True and new["url"] == page_url, links
    assert len(stack.stripe.received("POST", "/v1/account_links")) == refreshes_before + 1

    assert_marketplace_shows(stack, browser, "complete", "payments enabled")
    assert profile_flags(db, seller["id"]) == (True, True, True)
    assert db.execute("SELECT details_submitted AND charges_enabled FROM profiles WHERE id = %s",
                      (seller["id"],)).fetchone()[0] is True
    assert_real_screenshot(browser, tmp_path, "onboarding-after-refresh")


def test_browser_save_for_later_is_not_enabled(stack, db, browser, tmp_path):
    """Reaching the return URL is not completion: "Save for later" ends on the page saying
    payments are not enabled, and the profile stays disabled."""
    seller = make_profile(db, "seller")
    created = create_account(stack, seller)
    browser.get(created["onboarding_url"])
    WebDriverWait(browser, 15).until(EC.presence_of_element_located((By.ID, "complete")))
    later = [b for b in browser.find_elements(By.CSS_SELECTOR, "button, input[type=submit]")
             if b.get_attribute("value") == "later"]
    assert len(later) == 1, "the hosted page has no Save-for-later button"
    later[0].click()
    wait_through_navigation(browser, 20, lambda d: d.current_url.startswith(stack.app.env["APP_RETURN_URL"]))
    body = assert_marketplace_shows(stack, browser, "incomplete", "payments are not enabled")
    assert "payments enabled" not in body
    assert profile_flags(db, seller["id"]) == (False, False, False)
    assert_real_screenshot(browser, tmp_path, "onboarding-incomplete")
