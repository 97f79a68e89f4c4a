"""The web console in a real browser: headless Chromium, driven by Selenium through Debian's
chromedriver, against a Warren started here (tests/interop/warren_process.py).

What a user sees: the login refusing a wrong password and a user without a management tag
(with RabbitMQ's words), a queue declared with pika appearing in the Queues list and its
ready count following the messages published, a delayed message found under Scheduled with
the due time it was published for and cancelled from there, every page drawn without a
JavaScript error, and the queues page fitting a phone's width.

With WARREN_CONSOLE_SCREENSHOTS=<dir>, a PNG of each page is saved there (docs/console/ holds
the committed ones). Needs WARREN_BIN, the selenium package and chromium + chromedriver, which
tests/interop/run.sh installs; skipped only when they could not be installed.
"""

import base64
import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import uuid

import pika
import pytest

from warren_process import BIN, Warren

try:
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # run.sh installs it; without it the browser cannot be driven
    webdriver = None

CHROMEDRIVER = shutil.which("chromedriver") or (
    "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = os.environ.get("WARREN_CONSOLE_SCREENSHOTS")

pytestmark = [
    pytest.mark.skipif(not BIN, reason="needs WARREN_BIN (set by run.sh when it builds Warren)"),
    pytest.mark.skipif(webdriver is None, reason="the selenium package is not installed"),
    pytest.mark.skipif(not CHROMEDRIVER or not CHROMIUM,
                       reason="chromium and chromedriver are not installed (run.sh installs them)"),
]

# How long the DOM may take to show a change: the console refreshes every 5 s.
PATIENCE = 30


def unique(prefix):
    return f"console-{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def warren(tmp_path_factory):
    # Sampled every second, so the overview's rate chart moves within the test.
    w = Warren(tmp_path_factory.mktemp("console-data"), "--collect-statistics-interval", "1000")
    yield w
    w.stop()


def api(warren, method, path, body=None, user="guest", password="guest"):
    """(status, JSON or None) of a management API call."""
    request = urllib.request.Request(
        warren.management_url + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json",
                 "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            text = r.read()
            return r.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        text = e.read()
        return e.code, json.loads(text) if text else None


@pytest.fixture
def browser():
    """A fresh headless Chromium (its own profile), logging every console message."""
    profile = tempfile.mkdtemp(prefix="warren-console-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # Without these Chromium waits on network services a closed CI machine cannot reach.
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 "--disable-extensions", "--window-size=1280,800",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(PATIENCE)
    driver.set_window_size(1280, 800)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def wait(driver, condition, what, seconds=PATIENCE):
    try:
        return WebDriverWait(driver, seconds, poll_frequency=0.2).until(lambda d: condition(d))
    except TimeoutException:
        pytest.fail(f"timed out waiting for {what}; the page said:\n"
                    f"{driver.find_element(By.TAG_NAME, 'body').text}")


def shot(driver, name):
    """Saves the viewport as <SHOTS>/<name>.png when screenshots are asked for."""
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        time.sleep(0.3)  # let the last refresh paint
        driver.save_screenshot(os.path.join(SHOTS, f"{name}.png"))


def login(driver, warren, user="guest", password="guest"):
    driver.get(warren.management_url + "/")
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "form#login"), "the login form")
    driver.find_element(By.NAME, "username").send_keys(user)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "form#login button[type=submit]").click()


def log_in(driver, warren):
    login(driver, warren)
    wait(driver, lambda d: d.find_element(By.ID, "nav").is_displayed(), "the navigation")


def visit(driver, warren, hash_path, heading):
    """Opens #hash_path and waits for its heading (and for its data, not 'loading')."""
    driver.get(f"{warren.management_url}/#{hash_path}")
    wait(driver, lambda d: any(heading in h.text for h in d.find_elements(By.TAG_NAME, "h1")),
         f"the page {hash_path} ({heading})")


def severe(driver, allowed=()):
    """The browser's SEVERE log entries, less network failures whose URL contains one of
    `allowed`."""
    found = []
    for entry in driver.get_log("browser"):
        if entry["level"] != "SEVERE":
            continue
        if entry.get("source") == "network" and any(a in entry["message"] for a in allowed):
            continue
        found.append(entry)
    return found


def errors_shown(driver):
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".notice.error")]


def test_login_refuses_wrong_passwords_and_users_without_a_management_tag(browser, warren):
    login(browser, warren, password="not-the-password")
    wait(browser, lambda d: "Login failed" in d.find_element(By.ID, "view").text,
         "the refusal of a wrong password")
    assert not browser.find_element(By.ID, "nav").is_displayed()

    user, password = unique("plain"), "pw-" + uuid.uuid4().hex
    status, body = api(warren, "PUT", f"/api/users/{user}", {"password": password, "tags": ""})
    assert status == 201, body
    login(browser, warren, user, password)
    wait(browser, lambda d: "Not management user" in d.find_element(By.ID, "view").text,
         "RabbitMQ's refusal of a user without a management tag")
    assert not browser.find_element(By.ID, "nav").is_displayed()

    log_in(browser, warren)
    assert "User: guest" in browser.find_element(By.ID, "who").text
    browser.find_element(By.ID, "logout").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "form#login"), "the login after logout")
    assert browser.execute_script("return sessionStorage.length") == 0
    # The refusals above are 401/403 answers the browser logs as failed loads; nothing else.
    assert severe(browser, allowed=("/api/whoami",)) == []


def test_a_declared_queue_appears_and_its_ready_count_follows_publishes(browser, warren):
    queue = unique("q")
    conn = warren.connect()
    try:
        ch = conn.channel()
        ch.queue_declare(queue)
        log_in(browser, warren)
        visit(browser, warren, "/queues", "Queues")
        row = f'tr[data-vhost="/"][data-queue="{queue}"]'
        ready = f'{row} td[data-field="messages_ready"]'
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ready), "the queue's row")
        assert browser.find_element(By.CSS_SELECTOR, ready).text == "0"

        for i in range(3):
            ch.basic_publish("", queue, f"message {i}".encode())
        wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, ready).text == "3",
             "the ready count to reach 3")
        assert browser.find_element(By.CSS_SELECTOR, f'{row} td[data-field="messages"]').text == "3"

        ch.basic_get(queue, auto_ack=True)
        wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, ready).text == "2",
             "the ready count to fall to 2")
        assert severe(browser) == []
    finally:
        conn.close()


def delayed_exchange(ch, name):
    ch.exchange_declare(name, exchange_type="x-delayed-message",
                        arguments={"x-delayed-type": "direct"})


def test_a_delayed_message_is_shown_with_its_due_time_and_cancelled_from_the_ui(browser, warren):
    exchange, queue = unique("delayed"), unique("held")
    conn = warren.connect()
    try:
        ch = conn.channel()
        delayed_exchange(ch, exchange)
        ch.queue_declare(queue)
        ch.queue_bind(queue, exchange, routing_key="later")
        published_ms = time.time() * 1000
        ch.basic_publish(exchange, "later", b"in two minutes",
                         pika.BasicProperties(headers={"x-delay": 120000}))

        log_in(browser, warren)
        visit(browser, warren, "/scheduled", "Scheduled")
        link = wait(browser, lambda d: d.find_elements(
            By.CSS_SELECTOR, f'tr[data-vhost="/"][data-scheduled="{exchange}"] a'), "the delayed exchange")
        assert browser.find_element(
            By.CSS_SELECTOR, f'tr[data-vhost="/"][data-scheduled="{exchange}"] td[data-field="pending"]').text == "1"
        link[0].click()
        rows = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#pending tr[data-id]"),
                    "the pending message")
        assert len(rows) == 1
        due_ms = int(rows[0].get_attribute("data-due-ms"))
        assert abs(due_ms - (published_ms + 120000)) <= 2000, (due_ms, published_ms)
        assert "later" in rows[0].text
        assert "in 1 min" in rows[0].text or "in 2 min" in rows[0].text, rows[0].text
        # The chart of when messages fall due, or a clear note when the broker has none.
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#due-chart svg, #due-chart .notice"),
             "the due-time chart")

        button = '#pending tr[data-id] button[data-action="cancel"]'
        browser.find_element(By.CSS_SELECTOR, button).click()
        # A second click is needed; the list is not redrawn while the button waits for it.
        assert "Confirm" in browser.find_element(By.CSS_SELECTOR, button).text
        assert len(browser.find_elements(By.CSS_SELECTOR, "#pending tr[data-id]")) == 1
        browser.find_element(By.CSS_SELECTOR, button).click()
        wait(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, "#pending tr[data-id]"),
             "the cancelled message to go")
        wait(browser, lambda d: "Nothing pending" in d.find_element(By.ID, "pending").text,
             "the empty list")
        status, counts = api(warren, "GET", "/api/scheduled")
        assert status == 200
        assert [c["pending"] for c in counts if c["exchange"] == exchange] == [0]
        assert severe(browser) == []
    finally:
        conn.close()


def traffic(warren, exchange, seconds):
    """Publishes to `exchange` and consumes with acks for `seconds`, on a connection of its own."""
    conn = warren.connect()
    try:
        ch = conn.channel()
        ch.queue_declare("traffic")
        ch.queue_bind("traffic", exchange, routing_key="traffic")
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for _ in range(50):
                ch.basic_publish(exchange, "traffic", b"tick")
            while (got := ch.basic_get("traffic"))[0] is not None:
                ch.basic_ack(got[0].delivery_tag)
            conn.sleep(0.1)
        ch.queue_delete("traffic")
    finally:
        conn.close()


def test_every_page_renders_without_a_javascript_error(browser, warren):
    """Also where the screenshots in docs/console/ come from: the broker is given a few
    queues, messages, a consumer and scheduled messages first, so the pages show something."""
    queue, exchange, delayed = "orders", "shop", "reminders"
    conn = warren.connect()
    consumer_conn = warren.connect()
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.exchange_declare(exchange, exchange_type="topic", durable=True)
        for q in (queue, "invoices", "emails"):
            ch.queue_declare(q, durable=True)
        ch.queue_bind(queue, exchange, routing_key="order.*")
        ch.queue_bind("invoices", exchange, routing_key="order.paid")
        for i in range(40):
            ch.basic_publish(exchange, "order.paid" if i % 2 else "order.new", f"order {i}".encode())
        delayed_exchange(ch, delayed)
        ch.queue_bind("emails", delayed, routing_key="email")
        for i, delay in enumerate([20000, 45000, 600000, 1800000, 7200000, 90000000, 200000000]):
            for _ in range(i + 1):
                ch.basic_publish(delayed, "email", b"remember",
                                 pika.BasicProperties(headers={"x-delay": delay}))
        cch = consumer_conn.channel()
        cch.basic_qos(prefetch_count=5)
        cch.basic_consume("emails", lambda *a: None)

        browser.get(warren.management_url + "/")
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "form#login"), "the login form")
        browser.find_element(By.NAME, "username").send_keys("guest")
        browser.find_element(By.NAME, "password").send_keys("guest")
        shot(browser, "login")
        browser.find_element(By.CSS_SELECTOR, "form#login button[type=submit]").click()
        wait(browser, lambda d: d.find_element(By.ID, "nav").is_displayed(), "the navigation")

        pages = [
            ("/", "Overview", "overview", "#totals"),
            ("/queues", "Queues", "queues", f'tr[data-queue="{queue}"]'),
            (f"/queues/%2F/{queue}", f"Queue {queue}", "queue-detail", '[data-field="messages_ready"]'),
            ("/exchanges", "Exchanges", "exchanges", f'tr[data-exchange="{exchange}"]'),
            (f"/exchanges/%2F/{exchange}", f"Exchange {exchange}", "exchange-detail", "form#publish"),
            ("/connections", "Connections", "connections", "tr[data-connection]"),
            ("/channels", "Channels", "channels", "tbody tr"),
            ("/users", "Users", "users", 'tr[data-user="guest"]'),
            ("/vhosts", "Virtual hosts", "vhosts", 'tr[data-vhost="/"]'),
            ("/permissions", "Permissions", "permissions", "tbody tr"),
            ("/definitions", "Definitions", "definitions", "#export"),
            (f"/scheduled/%2F/{delayed}", f"Scheduled on {delayed}", "scheduled", "#pending tr[data-id]"),
        ]
        for path, heading, name, ready in pages:
            visit(browser, warren, path, heading)
            wait(browser, lambda d, r=ready: d.find_elements(By.CSS_SELECTOR, r), f"{name}'s data ({ready})")
            if name == "overview" and SHOTS:
                # Traffic for a few refreshes, so the rate chart has something to draw.
                traffic(warren, exchange, seconds=12)
            if name == "scheduled":
                wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#due-chart svg, #due-chart .notice"),
                     "the due-time chart")
            assert errors_shown(browser) == [], f"{name} shows an error"
            shot(browser, name)
            assert severe(browser) == [], f"{name} logged an error"
        visit(browser, warren, "/scheduled", "Scheduled")
        assert severe(browser) == []
    finally:
        consumer_conn.close()
        conn.close()


def test_the_queues_page_fits_a_phone(browser, warren):
    conn = warren.connect()
    try:
        ch = conn.channel()
        ch.queue_declare(unique("a-rather-long-queue-name-for-a-small-screen"))
        browser.set_window_size(390, 844)
        log_in(browser, warren)
        visit(browser, warren, "/queues", "Queues")
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-queue]"), "the queue rows")
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"the page is {overflow}px wider than the phone's screen"
        # Each cell names its column, since the table's header is hidden on a phone.
        cell = browser.find_element(By.CSS_SELECTOR, 'tr[data-queue] td[data-field="messages_ready"]')
        assert cell.get_attribute("data-label") == "Ready"
        shot(browser, "queues-phone")
        assert severe(browser) == []
    finally:
        conn.close()
