"""Issue 19, item 2 — the buyer page, the seller page and the admin console in a real browser:
headless Chromium (Debian's package, driven by Selenium) against the whole stack the harness
starts (nginx serving nginx/static with the pages' Content-Security-Policy, the app, PostgreSQL,
the fake Stripe). Each test signs in by pasting a development token, drives the page through
its main path, and asserts what the page shows and what the database holds. Screenshots go to
the test's tmp folder; with UPDATE_SCREENSHOTS=1 the tests also write docs/buyer.png,
docs/seller.png and docs/admin.png."""

import base64
import json
import os
import shutil
import time
import uuid

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

from browser import WINDOW, headless_chromium, wait_through_navigation
from charge_models import stack_by_model  # noqa: F401  (the buyer's purchase under both charge models)
from harness.api import make_profile, onboarded_seller, token, wait_for
from harness.paths import REPO
from test_connect_browser import png_size
from test_disputes_platform import captured_purchase
from test_milestones import open_dispute

WAIT = 20


@pytest.fixture
def browser(tmp_path):
    with headless_chromium(tmp_path / "chromium-profile") as driver:
        yield driver


# --- helpers -------------------------------------------------------------------------------

def text_of(driver, element_id):
    return driver.find_element(By.ID, element_id).text


def wait_text(driver, element_id, expected, timeout=WAIT):
    """Waits until the element's text contains `expected`; returns the text."""
    try:
        wait_through_navigation(driver, timeout, lambda d: expected in text_of(d, element_id))
    except Exception as error:
        raise AssertionError(f"#{element_id} never showed {expected!r}; it shows {text_of(driver, element_id)!r};"
                             f" console: {console_errors(driver)}") from error
    return text_of(driver, element_id)


def console_errors(driver):
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]


def assert_no_policy_violations(driver):
    """Nothing the page did was refused by its Content-Security-Policy, and no script failed."""
    errors = console_errors(driver)
    assert not [e for e in errors if "Content Security Policy" in e or "Refused to" in e], errors
    assert not [e for e in errors if "Uncaught" in e], errors


def sign_in(stack, driver, path, profile):
    """Opens the page and pastes the profile's development token into the sign-in box."""
    driver.get(stack.url(path))
    WebDriverWait(driver, WAIT).until(EC.presence_of_element_located((By.ID, "token")))
    assert "Not signed in" in wait_text(driver, "whoami", "Not signed in")
    pasted = token(profile["user_id"])
    driver.find_element(By.ID, "token").send_keys(pasted)
    driver.find_element(By.ID, "sign-in").click()
    wait_text(driver, "whoami", f"Signed in as {profile['user_id']} ({profile['role']})")
    # The token is kept in this tab's sessionStorage only: no cookie, no localStorage, and the
    # box it was pasted into is emptied.
    assert driver.execute_script("return sessionStorage.getItem('payments.token')") == pasted
    assert driver.execute_script("return localStorage.length") == 0
    assert driver.find_element(By.ID, "token").get_attribute("value") == ""
    assert driver.get_cookies() == []


def row_with(driver, table_id, text, timeout=WAIT):
    """The table row whose text contains `text` (waits for it)."""
    def find(d):
        return next((row for row in d.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr") if text in row.text),
                    None)
    try:
        # The pages re-render their tables: a row found a moment ago may be gone (stale).
        return WebDriverWait(driver, timeout, ignored_exceptions=[StaleElementReferenceException]).until(find)
    except Exception as error:
        raise AssertionError(f"no row of #{table_id} shows {text!r}: {text_of(driver, table_id)!r}") from error


def row_text(driver, table_id, text, timeout=WAIT):
    """The text of the row showing `text`, read again if the page re-rendered the table."""
    return WebDriverWait(driver, timeout, ignored_exceptions=[StaleElementReferenceException]).until(
        lambda d: row_with(d, table_id, text, timeout).text)


def wait_row(driver, table_id, text, *expected, timeout=WAIT):
    """Waits until the row showing `text` also shows every one of `expected` (the table may
    still hold an earlier rendering); returns its text."""
    try:
        return WebDriverWait(driver, timeout, ignored_exceptions=[StaleElementReferenceException]).until(
            lambda d: (lambda t: t if all(e in t for e in expected) else None)(row_with(d, table_id, text, timeout).text))
    except Exception as error:
        raise AssertionError(f"#{table_id}: no row with {text!r} shows {expected}: {text_of(driver, table_id)!r}") \
            from error


def click(driver, element):
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def click_in_row(driver, table_id, text, selector):
    """Clicks `selector` in the row showing `text`, finding it again if the page re-rendered
    the table meanwhile."""
    def attempt(d):
        click(d, row_with(d, table_id, text).find_element(By.CSS_SELECTOR, selector))
        return True
    WebDriverWait(driver, WAIT, ignored_exceptions=[StaleElementReferenceException]).until(attempt)


def screenshot(driver, tmp_path, name, docs_name=None):
    """A PNG of the whole page (Chromium's own capture beyond the viewport) in the test's
    folder, checked to be a real picture; with UPDATE_SCREENSHOTS=1 also copied to
    docs/`docs_name`."""
    driver.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.3)
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    width, height = int(size["width"]), int(min(size["height"], 6000))
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
    path = tmp_path / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    shot_width, shot_height = png_size(path)
    assert WINDOW[0] - 40 <= shot_width <= WINDOW[0] and shot_height >= WINDOW[1] // 2, (shot_width, shot_height)
    assert path.stat().st_size > 20_000, path.stat().st_size  # a page with content, not a blank one
    print(f"screenshot: {path} ({path.stat().st_size} bytes)")
    if docs_name and os.environ.get("UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(path, REPO / "docs" / docs_name)
    return path


def insert_listing(db, seller, title, price):
    return db.execute("INSERT INTO listings (seller_id, title, kind, price_cents, currency) VALUES (%s, %s, 'item', %s,"
                      " 'usd') RETURNING id::text", (seller["id"], title, price)).fetchone()[0]


def payment_of_listing(db, listing_id):
    return db.execute("SELECT id::text, status, amount_cents, amount_received, stripe_payment_intent_id FROM payments"
                      " WHERE listing_id = %s", (listing_id,)).fetchall()


# --- the buyer ------------------------------------------------------------------------------

@pytest.mark.parametrize("stack", ["destination", "direct"], indirect=True)
def test_buyer_buys_a_listing_and_confirms_delivery(stack, db, browser, tmp_path, fresh_ip_windows):
    seller = onboarded_seller(stack, db)
    title = f"Walnut desk {uuid.uuid4().hex[:6]}"
    listing_id = insert_listing(db, seller, title, 2500)
    other = insert_listing(db, seller, f"Oak chair {uuid.uuid4().hex[:6]}", 4000)
    buyer = make_profile(db, "buyer")
    sign_in(stack, browser, "/buyer/", buyer)

    # The listing is offered (GET /api/listings); "Buy" reserves it and creates the intent.
    row = row_text(browser, "listings", title)
    assert "25.00 USD" in row and "ready" in row
    click_in_row(browser, "listings", title, "button.buy")
    WebDriverWait(browser, WAIT).until(lambda d: d.find_element(By.ID, "card-form-fake").is_displayed())
    assert wait_text(browser, "checkout-amount", "25.00 USD")
    (payment,) = payment_of_listing(db, listing_id)
    payment_id, status, amount, received, intent = payment
    assert (amount, received) == (2500, 0) and intent.startswith("pi_")
    assert db.execute("SELECT status FROM listings WHERE id = %s", (listing_id,)).fetchone()[0] == "payment_pending"

    # The card is confirmed in the browser, at the fake's API, with the publishable key and the
    # client secret; the webhook moves the payment to requires_capture and the page follows.
    Select(browser.find_element(By.ID, "test-card")).select_by_value("pm_card_visa")
    click(browser, browser.find_element(By.ID, "pay"))
    wait_text(browser, "card-message", "Card accepted")
    confirms = stack.stripe.received("POST", f"/v1/payment_intents/{intent}/confirm")
    assert len(confirms) == 1 and confirms[0]["authorization"]["key_type"] == "pk_test", confirms
    assert confirms[0]["authorization"]["scheme"] == "key-param"
    # A direct charge's intent is the seller's: the page names its account, as Stripe.js would.
    assert confirms[0]["headers"].get("Stripe-Account") == \
        db.execute("SELECT stripe_account FROM payments WHERE id = %s", (payment_id,)).fetchone()[0]
    wait_text(browser, "payment-status", "requires_capture")
    assert text_of(browser, "payment-id") == payment_id
    assert db.execute("SELECT status FROM payments WHERE id = %s", (payment_id,)).fetchone()[0] == "requires_capture"

    # "Confirm delivery" captures: the payment ends succeeded, in the database and on the page.
    capture = browser.find_element(By.ID, "capture")
    assert capture.is_enabled()
    click(browser, capture)
    wait_text(browser, "payment-status", "succeeded")
    wait_text(browser, "payment-message", "Delivery confirmed")
    assert payment_of_listing(db, listing_id) == [(payment_id, "succeeded", 2500, 2500, intent)]
    assert db.execute("SELECT status FROM listings WHERE id = %s", (listing_id,)).fetchone()[0] == "sold"
    # The sold listing is no longer offered; the other one still is.
    click(browser, browser.find_element(By.ID, "refresh-listings"))
    row_with(browser, "listings", "Oak chair")
    assert title not in text_of(browser, "listings")
    assert payment_of_listing(db, other) == []
    assert not browser.find_element(By.ID, "capture").is_enabled()
    assert browser.find_element(By.ID, "open-dispute").is_enabled()  # a paid purchase can still be disputed
    row_with(browser, "my-payments", "succeeded")

    # The inbox shows the payment_succeeded notification; "Mark read" marks it in the database.
    click(browser, browser.find_element(By.ID, "refresh-notifications"))
    assert "payment_succeeded" in row_text(browser, "notifications", payment_id)
    (notification_id,) = db.execute("SELECT id::text FROM notifications WHERE profile_id = %s AND kind ="
                                    " 'payment_succeeded' AND payload->>'payment_id' = %s",
                                    (buyer["id"], payment_id)).fetchone()
    screenshot(browser, tmp_path, "buyer", "buyer.png")
    click_in_row(browser, "notifications", payment_id, "button.mark-read")
    wait_text(browser, "notifications-message", "Marked read")
    wait_for(lambda: db.execute("SELECT read_at IS NOT NULL FROM notifications WHERE id = %s",
                                (notification_id,)).fetchone()[0], what="the notification marked read")
    WebDriverWait(browser, WAIT, ignored_exceptions=[StaleElementReferenceException]).until(
        lambda d: "Mark read" not in row_with(d, "notifications", payment_id).text)
    assert_no_policy_violations(browser)


def test_buyer_sees_a_declined_card_and_buys_again(stack, db, browser, tmp_path, fresh_ip_windows):
    seller = onboarded_seller(stack, db)
    title = f"Brass lamp {uuid.uuid4().hex[:6]}"
    listing_id = insert_listing(db, seller, title, 1800)
    buyer = make_profile(db, "buyer")
    sign_in(stack, browser, "/buyer/", buyer)
    click_in_row(browser, "listings", title, "button.buy")
    WebDriverWait(browser, WAIT).until(lambda d: d.find_element(By.ID, "card-form-fake").is_displayed())
    Select(browser.find_element(By.ID, "test-card")).select_by_value("pm_card_chargeDeclined")
    click(browser, browser.find_element(By.ID, "pay"))
    message = wait_text(browser, "card-message", "The card was refused")
    assert "generic_decline" in message
    # The decline's webhook fails the payment and frees the listing; the page follows.
    wait_text(browser, "payment-status", "failed")
    wait_text(browser, "card-message", "choose Buy again")
    assert not browser.find_element(By.ID, "card-form-fake").is_displayed()
    assert not browser.find_element(By.ID, "capture").is_enabled()
    (failed,) = payment_of_listing(db, listing_id)
    assert failed[1] == "failed", failed
    assert db.execute("SELECT status FROM listings WHERE id = %s", (listing_id,)).fetchone()[0] == "active"

    # Buying again makes a new payment, and another card goes through.
    WebDriverWait(browser, WAIT, ignored_exceptions=[StaleElementReferenceException]).until(
        lambda d: row_with(d, "listings", title).find_element(By.CSS_SELECTOR, "button.buy").is_enabled())
    click_in_row(browser, "listings", title, "button.buy")
    WebDriverWait(browser, WAIT).until(lambda d: d.find_element(By.ID, "card-form-fake").is_displayed())
    Select(browser.find_element(By.ID, "test-card")).select_by_value("pm_card_mastercard")
    click(browser, browser.find_element(By.ID, "pay"))
    wait_text(browser, "card-message", "Card accepted")
    wait_text(browser, "payment-status", "requires_capture")
    payments = {p[0]: p[1] for p in payment_of_listing(db, listing_id)}
    assert sorted(payments.values()) == ["failed", "requires_capture"], payments
    assert text_of(browser, "payment-id") != failed[0]
    assert_no_policy_violations(browser)  # the decline's 402 is logged, but nothing was refused


def test_buyer_opens_a_dispute_from_the_page(stack, db, browser, tmp_path, fresh_ip_windows):
    """An authorised purchase disputed from the page: the dispute is open in the database, the
    payment shows it, and "confirm delivery" is no longer offered."""
    seller = onboarded_seller(stack, db)
    title = f"Tin robot {uuid.uuid4().hex[:6]}"
    listing_id = insert_listing(db, seller, title, 3100)
    buyer = make_profile(db, "buyer")
    sign_in(stack, browser, "/buyer/", buyer)
    click_in_row(browser, "listings", title, "button.buy")
    WebDriverWait(browser, WAIT).until(lambda d: d.find_element(By.ID, "card-form-fake").is_displayed())
    click(browser, browser.find_element(By.ID, "pay"))
    wait_text(browser, "payment-status", "requires_capture")
    ((payment_id, *_),) = payment_of_listing(db, listing_id)
    Select(browser.find_element(By.CSS_SELECTOR, "#dispute-form select[name=reason]")).select_by_value("not_as_described")
    browser.find_element(By.CSS_SELECTOR, "#dispute-form textarea[name=details]").send_keys("The robot does not walk.")
    click(browser, browser.find_element(By.ID, "open-dispute"))
    wait_text(browser, "payment-message", "Dispute opened (open)")
    wait_text(browser, "payment-disputed", "yes")
    assert not browser.find_element(By.ID, "capture").is_enabled()
    assert not browser.find_element(By.ID, "open-dispute").is_enabled()
    assert db.execute("SELECT kind, status, reason, details, opened_by::text FROM disputes WHERE payment_id = %s",
                      (payment_id,)).fetchall() == [("platform", "open", "not_as_described", "The robot does not walk.",
                                                     buyer["id"])]
    assert db.execute("SELECT status, is_disputed FROM payments WHERE id = %s", (payment_id,)).fetchone() \
        == ("requires_capture", True)
    assert_no_policy_violations(browser)


# --- the seller -----------------------------------------------------------------------------

def test_seller_onboards_and_sees_balance_and_payouts(stack, db, browser, tmp_path, fresh_ip_windows):
    seller = make_profile(db, "seller")
    sign_in(stack, browser, "/seller/", seller)
    wait_text(browser, "onboarding-summary", "Set up payments")
    assert text_of(browser, "account-id") == "none yet"
    wait_text(browser, "balance-message", "No Stripe account yet")

    # The onboarding button: POST /api/connect/accounts, then the browser follows the link to
    # the fake's hosted page, completes, and comes back through our return endpoint.
    click(browser, browser.find_element(By.ID, "onboard"))
    wait_through_navigation(browser, WAIT, EC.presence_of_element_located((By.ID, "complete")))
    assert browser.current_url.startswith(f"{stack.stripe.url}/setup/e/acct_"), browser.current_url
    browser.find_element(By.ID, "complete").click()
    wait_through_navigation(browser, WAIT, lambda d: d.current_url.startswith(stack.app.env["APP_RETURN_URL"]))
    wait_text(browser, "result", "payments enabled")
    browser.find_element(By.ID, "seller-page").click()

    # Back on the seller page (the same tab keeps the token): onboarding is done.
    summary = wait_text(browser, "onboarding-summary", "Payments enabled")
    assert "not" not in summary
    account = db.execute("SELECT stripe_account_id FROM profiles WHERE id = %s", (seller["id"],)).fetchone()[0]
    assert account and text_of(browser, "account-id") == account
    assert db.execute("SELECT charges_enabled, payouts_enabled, details_submitted FROM profiles WHERE id = %s",
                      (seller["id"],)).fetchone() == (True, True, True)
    assert "enabled" in text_of(browser, "charges-enabled") and "enabled" in text_of(browser, "payouts-enabled")
    assert not browser.find_element(By.ID, "onboard").is_displayed()

    # Money arrives: a buyer pays 100.00 for one of the seller's listings (captured), and the
    # seller's account pays out 12.34.
    buyer = make_profile(db, "buyer")
    purchase = captured_purchase(stack, db, seller, buyer, price=10000)
    payout = stack.stripe_control("POST", f"/_control/accounts/{account}/payouts", {"amount": 1234, "status": "paid"})
    wait_for(lambda: db.execute("SELECT status FROM payouts WHERE stripe_payout_id = %s",
                                (payout["id"],)).fetchone() == ("paid",), what="the payout mirrored")
    click(browser, browser.find_element(By.ID, "refresh"))
    wait_row(browser, "payouts", "paid", "12.34 USD")
    wait_row(browser, "payments", purchase["listing"], "100.00 USD", "10.00 USD", "succeeded")
    balance = stack.get("/api/connect/balance", headers=seller["headers"]).json()
    shown = text_of(browser, "balance")
    expected = [(kind, m) for kind in ("available", "pending") for m in balance[kind]]
    assert expected, balance
    assert any(m["amount"] > 0 for _, m in expected), balance  # the transfer of 90.00 reached the account
    for kind, money in expected:
        sign, units = ("-" if money["amount"] < 0 else ""), abs(money["amount"])
        amount = f"{sign}{units // 100}.{units % 100:02d} {money['currency'].upper()}"
        assert f"{kind} {amount}" in shown, (shown, balance)

    # The Express dashboard link.
    click(browser, browser.find_element(By.ID, "dashboard"))
    WebDriverWait(browser, WAIT).until(lambda d: d.find_element(By.ID, "dashboard-link").is_displayed())
    href = browser.find_element(By.ID, "dashboard-link").get_attribute("href")
    assert href.startswith(stack.stripe.url + "/express/"), href
    screenshot(browser, tmp_path, "seller", "seller.png")
    assert_no_policy_violations(browser)


# --- the admin ------------------------------------------------------------------------------

def dead_payout_event(stack, db, account):
    """A `payout.paid` event the app never received (Connect deliveries paused and discarded),
    stored as `dead` with its exact bytes, as if every delivery had failed."""
    stack.stripe_control("POST", "/_control/webhooks/pause", {"endpoint": "connect"})
    try:
        payout = stack.stripe_control("POST", f"/_control/accounts/{account}/payouts", {"amount": 4321, "status": "paid"})
        (event,) = [e for e in stack.stripe_control("GET", "/_control/events?type=payout.paid")["data"]
                    if e["data"]["object"]["id"] == payout["id"]]
        stack.stripe_control("POST", "/_control/webhooks/discard_pending", {"endpoint": "connect"})
    finally:
        stack.stripe_control("POST", "/_control/webhooks/resume", {"endpoint": "connect"})
    payload = json.dumps(event, indent=2).encode()
    db.execute("INSERT INTO webhook_events (id, endpoint, type, created, account, object_id, payload, status, attempts,"
               " last_error) VALUES (%s, 'connect', 'payout.paid', %s, %s, %s, %s, 'dead', 6,"
               " 'delivery kept failing (test)')",
               (event["id"], event["created"], account, payout["id"], payload))
    return event["id"], payout["id"]


def test_admin_resolves_a_dispute_with_a_partial_refund_and_replays_a_dead_event(
        stack, db, browser, tmp_path, fresh_ip_windows):
    seller = onboarded_seller(stack, db)
    buyer = make_profile(db, "buyer")
    admin = make_profile(db, "admin")
    purchase = captured_purchase(stack, db, seller, buyer, price=8000)
    payment_id = purchase["payment_id"]
    opened = open_dispute(stack, buyer, payment_id, reason="item_not_received", details="The parcel never came.")
    assert opened.status_code == 201, opened.text
    dispute_id = opened.json()["id"]
    account = db.execute("SELECT stripe_account_id FROM profiles WHERE id = %s", (seller["id"],)).fetchone()[0]
    event_id, payout_id = dead_payout_event(stack, db, account)
    assert db.execute("SELECT count(*) FROM payouts WHERE stripe_payout_id = %s", (payout_id,)).fetchone()[0] == 0

    sign_in(stack, browser, "/admin/", admin)

    # Disputes: the open one is listed; its detail shows the payment.
    mine = f"#disputes button.open-dispute[data-id='{dispute_id}']"
    button = WebDriverWait(browser, WAIT).until(EC.presence_of_element_located((By.CSS_SELECTOR, mine)))
    row = button.find_element(By.XPATH, "./ancestor::tr").text
    assert "open" in row and "item_not_received" in row and "80.00 USD" in row, row
    click(browser, button)
    wait_text(browser, "detail-id", dispute_id)
    assert text_of(browser, "detail-status") == "open"
    assert "The parcel never came." in text_of(browser, "detail-fields")

    # A partial refund of 30.00: a refund row for the dispute, and the payment's refunded amount.
    browser.find_element(By.CSS_SELECTOR, "#refund-form input[name=amount]").send_keys("3000")
    browser.find_element(By.CSS_SELECTOR, "#refund-form input[name=reason]").send_keys("partial: box damaged")
    click(browser, browser.find_element(By.ID, "refund-submit"))
    wait_text(browser, "detail-message", "Refund of 3000 minor units")
    refund_row = row_text(browser, "detail-refunds", "30.00 USD")
    assert "partial: box damaged" in refund_row
    refunds = db.execute("SELECT amount_cents, status, reason FROM refunds WHERE dispute_id = %s", (dispute_id,)).fetchall()
    assert len(refunds) == 1 and refunds[0][0] == 3000 and refunds[0][2] == "partial: box damaged", refunds
    wait_for(lambda: db.execute("SELECT amount_refunded FROM payments WHERE id = %s", (payment_id,)).fetchone()[0] == 3000,
             what="the refund on the payment")

    # Resolve: dismissed with a note; nothing else moves.
    Select(browser.find_element(By.CSS_SELECTOR, "#resolve-form select[name=outcome]")).select_by_value("dismiss")
    browser.find_element(By.CSS_SELECTOR, "#resolve-form input[name=note]").send_keys("30.00 refunded for the damage")
    click(browser, browser.find_element(By.ID, "resolve-submit"))
    wait_text(browser, "detail-message", "Dispute dismissed (dismiss)")
    wait_text(browser, "detail-status", "dismissed")
    assert not browser.find_element(By.ID, "resolve-submit").is_enabled()  # a settled dispute is not resolved again
    wait_text(browser, "detail-refunded", "30.00 USD")
    assert db.execute("SELECT status, outcome, resolution_note FROM disputes WHERE id = %s", (dispute_id,)).fetchone() \
        == ("dismissed", "dismiss", "30.00 refunded for the damage")
    payment = db.execute("SELECT status, amount_received, amount_refunded, is_disputed FROM payments WHERE id = %s",
                         (payment_id,)).fetchone()
    assert payment == ("succeeded", 8000, 3000, False), payment
    assert db.execute("SELECT sum(amount_cents) FROM refunds WHERE payment_id = %s", (payment_id,)).fetchone()[0] == 3000
    history = text_of(browser, "detail-history")
    assert "dispute.refund" in history and "dispute.resolve" in history, history

    # Payments search: the disputed payment, refunded in part.
    browser.find_element(By.CSS_SELECTOR, "#payment-search input[name=buyer]").send_keys(buyer["id"])
    click(browser, browser.find_element(By.CSS_SELECTOR, "#payment-search button[type=submit]"))
    wait_row(browser, "payments", payment_id, "80.00 USD", "30.00 USD", "succeeded")

    # The webhook inbox: the dead event is listed; Replay applies it.
    Select(browser.find_element(By.CSS_SELECTOR, "#event-filter select[name=status]")).select_by_value("dead")
    click(browser, browser.find_element(By.CSS_SELECTOR, "#event-filter button[type=submit]"))
    wait_row(browser, "events", event_id, "dead", "payout.paid")
    click_in_row(browser, "events", event_id, "button.replay")
    wait_text(browser, "events-message", f"Replayed {event_id}: processed")
    wait_row(browser, "events", event_id, "processed")
    assert db.execute("SELECT status, processed_at IS NOT NULL FROM webhook_events WHERE id = %s",
                      (event_id,)).fetchone() == ("processed", True)
    assert db.execute("SELECT status, amount_cents, account FROM payouts WHERE stripe_payout_id = %s",
                      (payout_id,)).fetchone() == ("paid", 4321, account)

    # The audit log, filtered on the dispute: the refund and the resolution, by this admin.
    browser.find_element(By.CSS_SELECTOR, "#audit-filter input[name=entity_type]").send_keys("dispute")
    browser.find_element(By.CSS_SELECTOR, "#audit-filter input[name=entity_id]").send_keys(dispute_id)
    click(browser, browser.find_element(By.CSS_SELECTOR, "#audit-filter button[type=submit]"))
    stored = [r[0] for r in db.execute("SELECT operation FROM payment_audit_logs WHERE entity_type = 'dispute'"
                                       " AND entity_id = %s ORDER BY id DESC", (dispute_id,)).fetchall()]
    assert {"dispute.open", "dispute.refund", "dispute.resolve"} <= set(stored), stored
    try:  # the filtered rows, newest first, exactly those of the database
        WebDriverWait(browser, WAIT, ignored_exceptions=[StaleElementReferenceException]).until(
            lambda d: [e.text for e in d.find_elements(By.CSS_SELECTOR, "#audit .audit-operation")] == stored)
    except Exception as error:
        raise AssertionError(f"audit log shows {text_of(browser, 'audit')!r}, database has {stored}") from error
    assert admin["id"] in row_text(browser, "audit", "dispute.resolve")
    # The dispute list, all statuses: this one is dismissed now.
    Select(browser.find_element(By.CSS_SELECTOR, "#dispute-filter select[name=status]")).select_by_value("")
    click(browser, browser.find_element(By.CSS_SELECTOR, "#dispute-filter button[type=submit]"))
    WebDriverWait(browser, WAIT, ignored_exceptions=[StaleElementReferenceException]).until(
        lambda d: "dismissed" in d.find_element(By.CSS_SELECTOR, f"#disputes button[data-id='{dispute_id}']")
        .find_element(By.XPATH, "./ancestor::tr").text)
    screenshot(browser, tmp_path, "admin", "admin.png")
    assert_no_policy_violations(browser)


def test_admin_sees_a_dead_notification_delivery_and_retries_it(stack, db, browser, tmp_path, fresh_ip_windows):
    admin = make_profile(db, "admin")
    buyer = make_profile(db, "buyer")
    notification = db.execute(
        "INSERT INTO notifications (profile_id, kind, payload) VALUES (%s, 'refund_issued', %s) RETURNING id",
        (buyer["id"], json.dumps({"payment_id": "p-browser", "amount_cents": 1250}))).fetchone()[0]
    delivery = str(db.execute(
        "INSERT INTO notification_deliveries (notification_id, channel, state, attempts, last_error, last_attempt_at)"
        " VALUES (%s, 'email', 'dead', 10, 'curl 7: Could not connect to server (test)', now()) RETURNING id",
        (notification,)).fetchone()[0])

    sign_in(stack, browser, "/admin/", admin)
    Select(browser.find_element(By.CSS_SELECTOR, "#delivery-filter select[name=channel]")).select_by_value("email")
    click(browser, browser.find_element(By.CSS_SELECTOR, "#delivery-filter button[type=submit]"))
    wait_row(browser, "deliveries", buyer["id"], "refund_issued", "email", "dead", "Could not connect")
    click_in_row(browser, "deliveries", buyer["id"], "button.retry-delivery")
    wait_text(browser, "deliveries-message", f"Delivery {delivery} (refund_issued by email) is queued again.")
    wait_row(browser, "deliveries", buyer["id"], "pending")
    assert db.execute("SELECT state, attempts, next_attempt_at IS NOT NULL FROM notification_deliveries WHERE id = %s",
                      (delivery,)).fetchone() == ("pending", 0, True)
    assert db.execute("SELECT actor_profile_id::text FROM payment_audit_logs WHERE operation = 'notification_delivery.retry'"
                      " AND entity_id = %s", (delivery,)).fetchall() == [(admin["id"],)]
    screenshot(browser, tmp_path, "admin-notifications")
    assert_no_policy_violations(browser)
