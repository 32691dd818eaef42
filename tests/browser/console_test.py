"""The operators' console in a real browser (Debian's Chromium, driven by Playwright), against
`conveyor serve all` on a vhost and databases of its own; scripts/test-console starts it and
passes the addresses. Each check is what an operator (or an attacker) would see.

Usage: console_test.py CONSOLE_URL GATEWAY_URL MANAGEMENT_URL VHOST ADMIN_EMAIL ADMIN_PASSWORD
                       INVENTORY_DATABASE CONVEYOR_BIN PAYMENTS_PID_FILE PAYMENTS_LOG
Payments runs as its own process (`CONVEYOR_BIN serve payments`, its pid in PAYMENTS_PID_FILE,
listening at $PAYMENTS_URL); the test kills it and starts another, writing the new pid there.
"""

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

from playwright.sync_api import expect, sync_playwright

(console, gateway, management, vhost, admin_email, admin_password, inventory_db,
 conveyor_bin, payments_pid_file, payments_log) = sys.argv[1:11]
# The service whose dead letters the test makes: the one that consumes order.created.
SERVICE = "inventory"
# Chromium as the machine's closed network needs it: nothing fetched at start.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SECRETS = []  # strings no page may contain; filled as the test makes them
PAGES = []  # every page's HTML, scanned for SECRETS at the end


def log(text):
    print(f"test-console: {text}", file=sys.stderr, flush=True)


def http(method, url, body=None, token=None, form=False, basic=None):
    """The status and JSON (or text) of a request."""
    headers = {}
    data = None
    if body is not None:
        if form:
            data = urllib.parse.urlencode(body).encode()
            headers["content-type"] = "application/x-www-form-urlencoded"
        else:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
    if token:
        headers["authorization"] = f"Bearer {token}"
    if basic:
        headers["authorization"] = "Basic " + base64.b64encode(basic.encode()).decode()
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=15) as answer:
            status, text = answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def api(method, path, body=None, token=None, ok=(200, 201), form=False):
    status, answer = http(method, f"{gateway}/api{path}", body, token, form)
    assert status in ok, f"{method} /api{path} answered {status}: {answer}"
    return answer


def password_token(email, password):
    return api("POST", "/auth/token", {"grant_type": "password", "email": email, "password": password},
               form=True)["access_token"]


def person(name, password, admin):
    email = f"{name}-{uuid.uuid4().hex[:8]}@example.com"
    address = {"line1": "1 Test Street", "city": "Paris", "postal_code": "75001", "country": "FR"}
    user = api("POST", "/users", {"email": email, "name": name, "password": password, "address": address}, admin)
    SECRETS.append(password)
    return user["id"], email


def publish_poison(count, first):
    """`count` messages that no consumer can read, published as order.created."""
    for number in range(first, first + count):
        body = json.dumps({"note": f"<script>alert({number})</script> not an event"})
        status, answer = http("POST", f"{management}/api/exchanges/{urllib.parse.quote(vhost, safe='')}/conveyor.events/publish",
                              {"properties": {"content_type": "application/json", "delivery_mode": 2,
                                              "message_id": str(uuid.uuid4())},
                               "routing_key": "order.created", "payload": body, "payload_encoding": "string"},
                              basic="guest:guest")
        assert status == 200 and answer.get("routed"), f"publishing a poison message: {status} {answer}"


def dead_letters():
    status, queue = http("GET", f"{management}/api/queues/{urllib.parse.quote(vhost, safe='')}/{SERVICE}.dlq",
                         basic="guest:guest")
    assert status == 200, f"the management API: {status} {queue}"
    return queue.get("messages", 0)


def inventory_sql(statement):
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres",
                    "-d", inventory_db, "-c", statement], check=True, stdout=subprocess.DEVNULL)


# A bug a later deploy fixes: the warehouse refuses every reservation, with a data error that
# the runtime dead-letters at once (SQLSTATE class 22), naming the order.
WAREHOUSE_BUG = """
CREATE FUNCTION refuse_reservation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the warehouse refuses order %', NEW.order_id USING ERRCODE = '22023';
END $$;
CREATE TRIGGER refuse_reservation BEFORE INSERT ON reservations
  FOR EACH ROW EXECUTE FUNCTION refuse_reservation();
"""
WAREHOUSE_FIX = "DROP TRIGGER refuse_reservation ON reservations; DROP FUNCTION refuse_reservation();"


def place_orders(admin, count):
    """`count` orders of a customer with credit, for a product in stock: their ids."""
    customer_id, email = person("buyer", "buyer password 1234", admin)
    api("PATCH", f"/users/{customer_id}", {"credit_limit_cents": 1_000_000}, admin)
    sku = f"CONSOLE-{uuid.uuid4().hex[:8].upper()}"
    api("POST", "/products", {"sku": sku, "name": "console test", "price_cents": 250, "currency": "EUR",
                              "stock": 1000}, admin)
    token = password_token(email, "buyer password 1234")
    orders = []
    for _ in range(count):
        # Accepted once orders' copies have the user and the product.
        deadline = time.monotonic() + 30
        while True:
            status, answer = http("POST", f"{gateway}/api/orders", {"items": [{"sku": sku, "quantity": 1}]}, token)
            if status in (200, 201, 202):
                orders.append(answer["id"])
                break
            assert time.monotonic() < deadline and status in (404, 409, 422), f"placing an order: {status} {answer}"
            time.sleep(0.3)
    return token, orders


def order_status(token, order):
    return api("GET", f"/orders/{order}", token=token)["status"]


def wait_for(what, check, seconds=60):
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds} s"
        time.sleep(0.5)


def payments_ready():
    try:
        status, answer = http("GET", f"{os.environ['PAYMENTS_URL']}/readyz")
    except OSError:
        return False
    return status == 200 and answer.get("ready") is True


def kill_payments():
    """Kills the payments process as a crash would, and waits until it is gone."""
    with open(payments_pid_file) as file:
        pid = int(file.read())
    os.kill(pid, signal.SIGKILL)

    def gone():
        try:
            with open(f"/proc/{pid}/stat") as stat:
                return stat.read().split(") ", 1)[1].startswith("Z")
        except FileNotFoundError:
            return True
    wait_for("the payments process gone", gone, seconds=10)
    # Nothing to stop any more: a pid left here could be another process's by the cleanup.
    open(payments_pid_file, "w").close()


def start_payments():
    """A new payments process, as an operator would start it after a crash."""
    with open(payments_log, "ab") as output:
        process = subprocess.Popen([conveyor_bin, "serve", "payments"], stdin=subprocess.DEVNULL,
                                   stdout=output, stderr=subprocess.STDOUT)
    with open(payments_pid_file, "w") as file:
        file.write(str(process.pid))
    wait_for("payments ready again", payments_ready)


def sign_in(page, email, password):
    page.goto(f"{console}/sign-in")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def start_replay(page, rate, matching="3 of the 8"):
    """Starts a gentle replay of the warehouse's group from its scan, after a dry run."""
    page.goto(f"{console}/dead-letters/{SERVICE}")
    page.click("#start-scan")
    expect(page.locator("[data-scan-state=done]")).to_be_visible(timeout=60_000)
    group = page.locator("table.groups tbody tr", has_text="the warehouse refuses")
    group.locator("a.replay").click()
    page.click("button[name=dry_run]")
    expect(page.locator("#dry-run-result")).to_contain_text(matching)
    keep(page)
    page.fill("#replay-rate", str(rate))
    page.click("#confirm-replay")
    expect(page.locator("h1")).to_contain_text("Replay of inventory's dead letters")


def keep(page, shot=None):
    """Keeps the page's HTML for the secrets scan; with TEST_CONSOLE_SCREENSHOTS set, saves a
    screenshot named `shot` there too (the book's pictures)."""
    PAGES.append((page.url, page.content()))
    folder = os.environ.get("TEST_CONSOLE_SCREENSHOTS")
    if shot and folder:
        page.screenshot(path=os.path.join(folder, f"console-{shot}.png"), full_page=True)


def main():
    admin = password_token(admin_email, admin_password)
    SECRETS.extend([admin_password, admin])
    operator_id, operator_email = person("operator", "operator password 1234", admin)
    api("PATCH", f"/users/{operator_id}", {"operator": True, "operator_edits": ["order.created"]}, admin)
    _, customer_email = person("customer", "customer password 1234", admin)

    publish_poison(3, 1)
    wait_for(f"3 dead letters in {SERVICE}.dlq", lambda: dead_letters() == 3)
    log(f"3 poison messages are dead letters of {SERVICE}")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        viewport = {"width": 1200, "height": 720}
        dialogs = []

        # Not signed in: every page leads to the sign-in.
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(f"{console}/dead-letters/{SERVICE}")
        expect(page).to_have_url(f"{console}/sign-in")
        keep(page)

        # A customer's token is refused, and so is a wrong password.
        sign_in(page, customer_email, "customer password 1234")
        expect(page.locator("h1")).to_have_text("This console is for operators")
        keep(page)
        sign_in(page, operator_email, "not the password")
        expect(page.locator("#sign-in-problem")).to_contain_text("wrong email or password")
        keep(page)
        log("a customer and a wrong password are refused")

        # The operator signs in; the overview counts payments' dead letters.
        sign_in(page, operator_email, "operator password 1234")
        expect(page).to_have_url(f"{console}/")
        cell = page.locator(f"[data-live='{SERVICE}.dead_letters']")
        expect(cell).to_have_text("3")
        keep(page)
        token = next(c["value"] for c in context.cookies() if c["name"] == "conveyor_console")
        SECRETS.append(token)
        cookie = next(c for c in context.cookies() if c["name"] == "conveyor_console")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie

        # Two more arrive while the page is open: the count moves without a reload.
        publish_poison(2, 4)
        expect(cell).to_have_text("5", timeout=30_000)
        log("the overview's count went from 3 to 5 live")

        # A bug in the warehouse: three orders' reservations fail and are dead-lettered.
        inventory_sql(WAREHOUSE_BUG)
        buyer, orders = place_orders(admin, 3)
        expect(cell).to_have_text("8", timeout=30_000)
        assert [order_status(buyer, order) for order in orders] == ["pending"] * 3
        # The overview counts them in flight, and the orders published in the last minute.
        expect(page.locator("[data-live='flow.order.in_flight']")).to_have_text("3", timeout=15_000)
        # A type first published since the page loaded gets its row on a reload.
        page.reload()
        published = page.locator("[data-live='type.order.created']")
        expect(published).to_be_visible()
        assert int(published.inner_text()) >= 3, published.inner_text()
        expect(page.locator("[data-live='orders.outbox_parked']")).to_have_text("0")
        keep(page, "overview")
        log("three orders wait on the warehouse's dead letters")

        # The flows page names the step each order waits on, and the way to resume it.
        page.goto(f"{console}/flows?older_than=0")
        for order in orders:
            expect(page.locator(f"tr[data-run='{order}'] td.waits-on")).to_contain_text(
                "inventory to handle order.created")
        expect(page.locator(f"tr[data-run='{orders[0]}'] a.resume")).to_contain_text("dead letters in inventory")
        keep(page, "flows")
        page.click(f"tr[data-run='{orders[0]}'] td a[href^='/flows/']")
        expect(page.locator("table.timeline")).to_contain_text("dead-lettered")
        # Each step links to its lines in Grafana's Loki and its spans in Jaeger.
        expect(page.locator("table.timeline a.logs").first).to_have_attribute("href", re.compile(r"^http://127\.0\.0\.1:3000/explore\?left="))
        expect(page.locator("table.timeline a.trace").first).to_have_attribute("href", re.compile(r"^http://127\.0\.0\.1:16686/search\?service=.*event_id"))
        keep(page, "timeline")
        page.goto(f"{console}/")
        log("the flows page shows the three orders waiting on inventory's dead letters")

        # The scan streams its groups: 5 unreadable messages and 3 refused reservations.
        page.click(f"a[href='/dead-letters/{SERVICE}']")
        page.click("#start-scan")
        expect(page.locator("[data-scan-state=done]")).to_be_visible(timeout=60_000)
        rows = page.locator("table.groups tbody tr")
        expect(rows.locator("td.count")).to_have_text(["5", "3"])
        expect(rows.nth(1)).to_contain_text("the warehouse refuses order <id>")
        keep(page, "dead-letters")
        log("the streamed scan found a group of 5 and a group of 3")

        # A letter's body is shown as text: its markup does not run.
        rows.first.locator("a", has_text="one letter").click()
        expect(page.locator("pre.body")).to_contain_text("<script>alert(")
        keep(page)
        assert not dialogs, f"a letter's body ran as script: {dialogs}"

        # A filter that cannot work is named; one that matches nothing says so.
        page.goto(f"{console}/dead-letters/{SERVICE}?error_kind=nonsense")
        expect(page.locator("#filter-problem")).to_contain_text("error_kind")
        keep(page)

        # A form posted from another site, or without the session's CSRF token, does nothing.
        for headers, form in (({"origin": "https://evil.example"}, {"csrf": "x"}),
                              ({"origin": console}, {"csrf": "not the token"})):
            answer = context.request.post(f"{console}/sign-out", headers=headers, form=form)
            assert answer.status == 403, f"a forged sign-out answered {answer.status}"
        page.goto(f"{console}/")
        expect(page).to_have_url(f"{console}/")
        log("forged forms were refused and the session stayed")

        # Each alert's runbook, linked from the overview.
        page.goto(f"{console}/")
        page.click("a[href='/runbooks']")
        expect(page.locator("section#conveyor-flow-stuck-order h2")).to_have_text("ConveyorFlowStuckOrder")
        expect(page.locator("section#conveyor-dead-letters-growing")).to_contain_text("Replay the group gently")
        keep(page)

        # The audit page reads the log.
        page.goto(f"{console}/audit")
        expect(page.locator("h1")).to_have_text("Audit")
        keep(page)

        # Without JavaScript every page still reads: the scan answers with the whole page.
        plain = browser.new_context(java_script_enabled=False)
        plain_page = plain.new_page()
        sign_in(plain_page, operator_email, "operator password 1234")
        plain_page.goto(f"{console}/dead-letters/{SERVICE}")
        plain_page.click("#start-scan")
        expect(plain_page.locator("[data-scan-state=done]")).to_be_visible(timeout=60_000)
        expect(plain_page.locator("table.groups tbody tr td.count")).to_have_text(["5", "3"])
        keep(plain_page)
        plain.close()
        log("without JavaScript the scan page read whole")

        # The letters were given back: the queue still holds every one.
        assert dead_letters() == 8, f"{SERVICE}.dlq holds {dead_letters()} after the scans, not 8"

        # Replayed while the bug is there: one letter goes, fails again, and the replay stops.
        start_replay(page, rate=5)
        expect(page.locator(".replay-state")).to_contain_text("the failure came back", timeout=60_000)
        expect(page.locator("[data-figure=sent]")).to_have_text("1")
        expect(page.locator("[data-figure=came_back]")).to_have_text("1")
        keep(page)
        assert dead_letters() == 8
        log("a replay with the bug still there stopped after one letter")

        # The bug fixed: one letter edited and retried. A wrong value is refused at its field
        # and nothing is sent; the letter as it was goes once, and its order is confirmed.
        inventory_sql(WAREHOUSE_FIX)
        page.goto(f"{console}/dead-letters/{SERVICE}/letters?error_contains=warehouse")
        page.locator("article.letter a.edit").first.click()
        expect(page.locator("#edit-type")).to_have_text("order.created")
        data = json.loads(page.locator("#edit-data").input_value())
        wrong = json.loads(json.dumps(data))
        wrong["items"][0]["quantity"] = "lots"
        page.fill("#edit-data", json.dumps(wrong, indent=2))
        page.click("#check-edit")
        expect(page.locator("#edit-problems li[data-field='data.items[0].quantity']")).to_be_visible()
        keep(page, "edit")
        assert dead_letters() == 8, "a refused edit sent something"
        page.fill("#edit-data", json.dumps(data, indent=2))
        page.click("#check-edit")
        expect(page.locator("#edit-patch")).to_have_text("[]")
        page.click("#send-edit")
        expect(page.locator("#edit-sent")).to_contain_text("order.created")
        keep(page)
        edited = data["order_id"]
        wait_for("the edited letter's order confirmed", lambda: order_status(buyer, edited) == "confirmed")
        wait_for("7 dead letters left", lambda: dead_letters() == 7)
        log("an edit with a wrong value was refused at its field; the right one went once")

        # A replay, paused (through a reload), resumed, drains the rest of the group.
        start_replay(page, rate=0.5, matching="2 of the 7")
        page.click("#pause-replay")
        expect(page.locator(".replay-state")).to_contain_text("paused")
        page.reload()
        expect(page.locator(".replay-state")).to_contain_text("paused")
        # A batch under way when the pause came goes on to its end; after that nothing more
        # is sent (at half a letter a second, the next batch was due 2 s after the first).
        time.sleep(1)
        page.reload()
        sent = page.locator("[data-figure=sent]").inner_text()
        time.sleep(3)
        page.reload()
        expect(page.locator("[data-figure=sent]")).to_have_text(sent)
        page.click("#resume-replay")
        expect(page.locator(".replay-state")).to_contain_text("drained", timeout=60_000)
        expect(page.locator("[data-figure=sent]")).to_have_text("2")
        expect(page.locator("[data-figure=handled]")).to_have_text("2")
        keep(page, "replay")
        wait_for("the three orders confirmed",
                 lambda: [order_status(buyer, order) for order in orders] == ["confirmed"] * 3)
        page.goto(f"{console}/")
        expect(page.locator(f"[data-live='{SERVICE}.dead_letters']")).to_have_text("5", timeout=30_000)
        page.goto(f"{console}/flows?older_than=0")
        for order in orders:
            expect(page.locator(f"tr[data-run='{order}']")).to_have_count(0)
        log("paused, reloaded and resumed, the replay drained the group and every order was confirmed")

        # Payments crashes: a new order waits on it, and the flows page names payments and
        # what resumes the order. Payments started again, the order is confirmed and leaves.
        kill_payments()
        waiting_buyer, (waiting,) = place_orders(admin, 1)
        row = page.locator(f"tr[data-run='{waiting}']")

        def shown_waiting_on_payments():
            page.goto(f"{console}/flows?older_than=0")
            return row.count() == 1 and "payments" in row.locator("td.waits-on").inner_text()
        wait_for("the order shown waiting on payments", shown_waiting_on_payments, seconds=30)
        expect(row.locator(".resume")).to_have_text("start payments again")
        keep(page)
        start_payments()
        wait_for("the order confirmed", lambda: order_status(waiting_buyer, waiting) == "confirmed")
        page.goto(f"{console}/flows?older_than=0")
        expect(row).to_have_count(0)
        log("with payments down an order showed as waiting on it, and left once payments was back")

        # The audit log holds both replays: who, the pause and resume, the outcomes.
        page.goto(f"{console}/audit")
        audit = page.locator("table.audit tbody")
        expect(audit).to_contain_text("the failure came back")
        expect(audit).to_contain_text("drained")
        expect(audit).to_contain_text("paused")
        expect(audit).to_contain_text("resumed")
        keep(page, "audit")

        # Purging the unreadable letters needs the service's name typed; then they are gone.
        page.goto(f"{console}/dead-letters/{SERVICE}/purge?error_kind=malformed")
        page.click("button[name=dry_run]")
        expect(page.locator("#dry-run-result")).to_contain_text("5 of the 5")
        page.fill("#transfer-confirm", "not the service")
        page.click("#confirm-transfer")
        expect(page.locator("h1")).to_have_text("Nothing was done")
        assert dead_letters() == 5
        page.goto(f"{console}/dead-letters/{SERVICE}/purge?error_kind=malformed")
        page.fill("#transfer-confirm", SERVICE)
        page.click("#confirm-transfer")
        expect(page).to_have_url(f"{console}/audit")
        wait_for(f"{SERVICE}.dlq empty", lambda: dead_letters() == 0)
        page.reload()
        expect(page.locator("table.audit tbody tr").first).to_contain_text("purge")
        log("a purge refused until the service's name was typed, then the letters were gone")

        # Signing out ends the session.
        page.click("form.sign-out button")
        expect(page).to_have_url(f"{console}/sign-in")
        page.goto(f"{console}/")
        expect(page).to_have_url(f"{console}/sign-in")

        # Revoked while signed in, the operator is out at the next page, long before the
        # session's token expires; signing in again is refused too.
        sign_in(page, operator_email, "operator password 1234")
        expect(page).to_have_url(f"{console}/")
        api("PATCH", f"/users/{operator_id}", {"operator": False}, admin)
        page.reload()
        expect(page.locator("h1")).to_have_text("This console is for operators")
        # The refused session is over: its cookie is cleared, as a sign-out would.
        assert not [c for c in context.cookies() if c["name"] == "conveyor_console"], context.cookies()
        sign_in(page, operator_email, "operator password 1234")
        expect(page.locator("h1")).to_have_text("This console is for operators")
        log("signed out; then revoked while signed in: refused at the next page and at sign-in")
        browser.close()

    SECRETS.extend(["guest:guest", "postgres://", "amqp://"])
    for url, html in PAGES:
        for secret in SECRETS:
            assert secret not in html, f"{url} shows a secret ({secret[:12]}…)"
    log(f"no secret on any of {len(PAGES)} pages")


if __name__ == "__main__":
    main()
