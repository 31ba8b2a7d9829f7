"""The Stratus web UI in a real headless Chromium (Debian's chromium and chromium-driver),
over data the stock client made: every page opens and links to the others, the runs list
filters, a run's logs read and filter by level, an ad hoc run started from a deployment's
form is picked up by an agent and appears, and a running run is cancelled from its page.
A screenshot of each page is saved under build/ui-screenshots (STRATUS_UI_SCREENSHOTS)."""

import os
import shutil
import time
from pathlib import Path
from uuid import uuid4

import pytest
from conftest import AWS_ENV
from prefect.client.schemas.filters import FlowRunNotificationPolicyFilter

from _support import uid
from test_stratus_agent import agents_for, client_for, deploy, make_pool, wait_for  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("STRATUS_UI_SCREENSHOTS") or ROOT / "build" / "ui-screenshots")
WAIT = 60

pytestmark = pytest.mark.stratus_only


@pytest.fixture(scope="module")
def browser():
    chromium = os.environ.get("STRATUS_E2E_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    driver_bin = os.environ.get("STRATUS_E2E_CHROMEDRIVER") or shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        chromium = None
    if not chromium or not driver_bin:
        message = "Chromium, chromedriver or selenium is missing (the test command installs them)"
        if os.environ.get("STRATUS_E2E_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000", "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_bin), options=options)
    driver.set_page_load_timeout(30)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


class Page:
    """The browser pointed at one Stratus server, with the checks every page gets."""

    def __init__(self, driver, api_url):
        self.d = driver
        self.base = api_url[: -len("/api")]
        self.ignored = []

    def forget_console(self):
        """Drops the console's entries so far: the 4xx a test provoked on purpose logs there."""
        self.d.get_log("browser")

    def ignore_console(self, text):
        """Console errors containing `text` do not fail the checks (pictures from the internet)."""
        self.ignored.append(text)

    def open(self, path, shot=None):
        self.d.get(self.base + path)
        return self.checked(shot)

    def navigate(self, element, shot=None):
        """Clicks what loads a new page, waits until that page has replaced this one, and checks it.
        The click returns before the browser has left the old page, so checking at once may read it."""
        from selenium.common.exceptions import StaleElementReferenceException

        old = self.d.find_element("tag name", "html")
        element.click()

        def replaced():
            try:
                old.tag_name
                return False
            except StaleElementReferenceException:
                return self.d.execute_script("return document.readyState") == "complete"

        self.wait_for(replaced, "the next page to load")
        return self.checked(shot)

    def checked(self, shot=None):
        from selenium.webdriver.common.by import By

        # A page reached by a script or a form may still be loading when its URL has changed.
        self.wait_for(lambda: self.d.execute_script("return document.readyState") == "complete", "the page to load")
        title = self.d.title
        assert "Not found" not in title and "Something went wrong" not in title, f"{self.d.current_url}: {title}"
        assert self.d.find_elements(By.CSS_SELECTOR, "header.top nav a"), f"{self.d.current_url} has no navigation"
        errors = [e for e in self.d.get_log("browser") if e["level"] == "SEVERE"
                  and not any(text in e["message"] for text in self.ignored)]
        assert not errors, f"{self.d.current_url}: console errors {errors}"
        if shot:
            self.d.save_screenshot(str(SHOTS / f"{shot}.png"))
        return self

    def css(self, selector):
        from selenium.webdriver.common.by import By

        return self.d.find_elements(By.CSS_SELECTOR, selector)

    def link(self, text):
        from selenium.webdriver.common.by import By

        return self.d.find_element(By.PARTIAL_LINK_TEXT, text)

    def follow(self, text, shot=None):
        return self.navigate(self.link(text), shot)

    def text(self):
        return self.d.find_element("tag name", "body").text

    def wait_for(self, predicate, what, timeout=WAIT):
        from selenium.common.exceptions import WebDriverException

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return
            # The page may be reloading under the check (live pages reload on a state
            # change): an element gone stale, missing or detached reads again next time.
            except (WebDriverException, IndexError):
                pass
            time.sleep(0.3)
        raise AssertionError(f"timed out after {timeout}s waiting for {what} on {self.d.current_url}:\n{self.text()}")

    def run_state(self):
        return self.d.find_element("id", "run-state").text

    def fits_a_phone(self):
        width = self.d.execute_script("return document.documentElement.scrollWidth")
        view = self.d.execute_script("return window.innerWidth")
        return width <= view + 1


FLOW = """
import json
from prefect import flow, task, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.blocks.notifications import SlackWebhook
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import VariableCreate

@task(retries=1, retry_delay_seconds=0)
def flaky(attempts=[]):
    attempts.append(1)
    if len(attempts) == 1:
        raise ValueError("first try fails")
    return len(attempts)

@task
def double(x):
    return x * 2

@flow(name="{child}")
def child(n):
    get_run_logger().info("child doubles %s", n)
    return double(n)

@flow(name="{parent}")
def parent():
    log = get_run_logger()
    log.info("parent says hello")
    log.warning("parent warns once")
    a = double(1000)  # above the interned ints, so Prefect tracks where it came from
    b = double(a)
    c = child(b)
    create_markdown_artifact(key="{tag}-report", markdown="# Report\\n\\nall good")
    return flaky() + c

async def setup():
    async with get_client() as c:
        await c.create_variable(VariableCreate(name="{tag}_region", value="eu-west-1"))
        await c.create_concurrency_limit(tag="{tag}", concurrency_limit=3)
        await SlackWebhook(url="http://127.0.0.1:9/{tag}").save("{tag}-slack")

if __name__ == "__main__":
    import asyncio
    Secret(value="hunter2-{tag}").save("{tag}-secret")
    asyncio.run(setup())
    state = parent(return_state=True)
    print(json.dumps({{"flow_run_id": str(state.state_details.flow_run_id), "type": state.type.value}}))
"""


def test_every_page_opens_links_to_the_others_filters_and_shows_logs(browser, stratus_server, tmp_path, run_flow):
    api, client = stratus_server.url, client_for(stratus_server.url)
    tag = f"ui{uuid4().hex[:8]}"
    parent, child = f"{tag}-parent", f"{tag}-child"
    out = run_flow(FLOW.format(parent=parent, child=child, tag=tag))
    assert out["type"] == "COMPLETED", out
    run_id = out["flow_run_id"]
    pool = f"{tag}-pool"
    make_pool(api, tmp_path, pool)
    deploy(api, tmp_path, AWS_ENV, pool, f"{tag}-deployment")

    page = Page(browser, api)
    page.open("/", "dashboard")
    assert "Flow runs" in page.text()

    # Every page in the navigation.
    for label, shot in [("Flow runs", "flow-runs"), ("Flows", "flows"), ("Deployments", "deployments"),
                        ("Work pools", "work-pools"), ("Blocks", "blocks"), ("Concurrency", "concurrency-limits"),
                        ("Variables", "variables"), ("Artifacts", "artifacts"), ("Notifications", "notifications"),
                        ("Dashboard", "dashboard-again")]:
        page.navigate(page.css(f"header.top nav a[href='{page_href(label)}']")[0], shot)
    assert f"{tag}-report" in page.open("/artifacts").text()
    assert f"{tag}_region" in page.open("/variables").text()
    assert tag in page.open("/concurrency-limits").text()

    # A notification created from the form, then paused and resumed from its row.
    from selenium.webdriver.support.ui import Select

    page.open("/notifications")
    form = browser.find_element("id", "create-notification")
    Select(form.find_element("name", "block_document_id")).select_by_visible_text(f"{tag}-slack (Slack Webhook)")
    states = Select(form.find_element("name", "state_names"))
    states.select_by_value("Failed")
    states.select_by_value("Crashed")
    form.find_element("name", "tags").send_keys(f"{tag}, other-{tag}")
    form.find_element("css selector", "button[type=submit]").click()
    page.wait_for(lambda: any(f"{tag}-slack" in r.text for r in page.css("table tr")), "the new notification")
    page.checked("notification-created")
    row = [r for r in page.css("table tr") if f"{tag}-slack" in r.text][0]
    assert "Failed" in row.text and tag in row.text, row.text
    [policy] = [p for p in client(lambda c: c.read_flow_run_notification_policies(
        FlowRunNotificationPolicyFilter(is_active={"eq_": None}))) if tag in p.tags]
    assert (policy.state_names, policy.tags, policy.message_template) == (["Failed", "Crashed"], [tag, f"other-{tag}"], None)
    row.find_element("xpath", ".//button[text()='Pause']").click()
    page.wait_for(lambda: any(f"{tag}-slack" in r.text and "paused" in r.text for r in page.css("table tr")),
                  "the policy to pause")
    page.checked("notifications-paused")
    assert policy.id in {p.id for p in client(lambda c: c.read_flow_run_notification_policies(
        FlowRunNotificationPolicyFilter(is_active={"eq_": False})))}
    row = [r for r in page.css("table tr") if f"{tag}-slack" in r.text][0]
    row.find_element("xpath", ".//button[text()='Resume']").click()
    page.wait_for(lambda: any(f"{tag}-slack" in r.text and "yes" in r.text for r in page.css("table tr")),
                  "the policy to resume")

    # A block's page shows that it is a secret, not the secret.
    page.open("/blocks").follow(f"{tag}-secret", "block")
    assert f"hunter2-{tag}" not in browser.page_source

    # The runs list filters by flow name and state.
    page.open("/flow-runs")
    form = page.css("form.filters")[0]
    form.find_element("name", "flow").send_keys(parent)
    from selenium.webdriver.support.ui import Select

    Select(form.find_element("name", "state")).select_by_value("COMPLETED")
    page.navigate(form.find_element("css selector", "button[type=submit]"), "flow-runs-filtered")
    rows = page.css("table.runs tbody tr")
    assert len(rows) == 1, page.text()
    assert parent in rows[0].text and "Completed" in rows[0].text
    page.open(f"/flow-runs?flow={parent}&state=FAILED")
    assert "No flow runs." in page.text()

    # The flow run: its tasks, graph, states, subflow and logs, and the links out of it.
    page.open(f"/flow-runs?flow={parent}").follow(parent, "flow-run")
    assert run_id in browser.current_url
    body = page.text()
    for text in ["double-0", "double-1", "flaky-0", "parent says hello", "parent warns once", "Completed"]:
        assert text in body, f"the flow run page lacks {text!r}:\n{body}"
    flaky_row = [r for r in page.css("table tr") if "flaky-0" in r.text][0]
    assert flaky_row.find_element("css selector", ".task-attempts").text == "2", "the retry is not shown"
    # double-0 → double-1 → the subflow's task: drawn as boxes joined by edges.
    assert len(page.css(".graph svg g.node")) >= 4, "no task graph"
    assert len(page.css(".graph svg path.edge")) >= 2, "the graph has no dependency edges"

    Select(page.css("select[name=level]")[0]).select_by_value("30")
    page.wait_for(lambda: "level=30" in browser.current_url, "the level filter")
    page.checked("flow-run-warnings")
    assert "parent warns once" in page.text() and "parent says hello" not in page.text()

    page.open(f"/flow-runs/{run_id}")
    page.follow("subflow run", "subflow-run")
    assert child in page.text() and "child doubles" in page.text()
    page.follow(run_id, "parent-flow-run")
    page.follow(parent, "flow")
    assert parent in page.text()

    # Deployment and work pool pages, reached by links; a schedule turned off and on.
    deployment = client(lambda c: c.read_deployment_by_name(f"work/{tag}-deployment"))
    from prefect.client.schemas.schedules import IntervalSchedule
    from datetime import timedelta

    client(lambda c: c.create_deployment_schedules(deployment.id, [(IntervalSchedule(interval=timedelta(hours=6)), True)]))
    page.open("/deployments").follow(f"{tag}-deployment", "deployment")
    assert "Run now" in page.text() and "every 6 hours" in page.text()
    page.css("ul.schedules button")[0].click()
    page.wait_for(lambda: "(off)" in page.text(), "the schedule to turn off")
    page.checked("deployment-schedule-off")
    [schedule] = client(lambda c: c.read_deployment_schedules(deployment.id))
    assert schedule.active is False
    page.css("ul.schedules button")[0].click()
    page.wait_for(lambda: "(off)" not in page.text() and page.css("ul.schedules button"), "the schedule to turn on")
    assert client(lambda c: c.read_deployment_schedules(deployment.id))[0].active is True

    page.open("/work-pools").follow(pool, "work-pool")
    assert pool in page.text()

    # A pool created from the form, then paused and resumed from its page.
    made = f"{tag}-made"
    page.open("/work-pools")
    form = browser.find_element("id", "create-pool")
    form.find_element("name", "name").send_keys(made)
    form.find_element("name", "concurrency_limit").send_keys("2")
    form.find_element("css selector", "button[type=submit]").click()
    page.wait_for(lambda: browser.current_url.endswith(f"/work-pools/{made}"), "the new pool's page")
    page.checked("work-pool-created")
    assert client(lambda c: c.read_work_pool(made)).concurrency_limit == 2
    page.css(".actions button")[0].click()
    page.wait_for(lambda: page.css(".actions button")[0].text == "Resume", "the pool to pause")
    assert client(lambda c: c.read_work_pool(made)).is_paused is True
    page.checked("work-pool-paused")
    page.css(".actions button")[0].click()
    page.wait_for(lambda: page.css(".actions button")[0].text == "Pause", "the pool to resume")
    assert client(lambda c: c.read_work_pool(made)).is_paused is False

    # Readable on a phone: nothing wider than the screen.
    browser.set_window_size(390, 844)
    try:
        for path, shot in [("/", "phone-dashboard"), (f"/flow-runs/{run_id}", "phone-flow-run"),
                           ("/flow-runs", "phone-flow-runs")]:
            page.open(path, shot)
            assert page.fits_a_phone(), f"{path} is wider than a phone screen"
    finally:
        browser.set_window_size(1280, 1000)

    # Bad input is a friendly page, not a 500.
    browser.get(page.base + "/flow-runs?page=zero")
    assert "did not make sense" in page.text() and "page" in page.text()
    browser.save_screenshot(str(SHOTS / "bad-request.png"))
    browser.get(page.base + "/flow-runs/" + str(uuid4()))
    assert "Not found" in browser.title
    browser.get_log("browser")  # the 4xx responses above log on the console


def page_href(label):
    return {
        "Dashboard": "/", "Flow runs": "/flow-runs", "Flows": "/flows", "Deployments": "/deployments",
        "Work pools": "/work-pools", "Blocks": "/blocks", "Concurrency": "/concurrency-limits",
        "Variables": "/variables", "Artifacts": "/artifacts", "Notifications": "/notifications",
    }[label]


def test_an_ad_hoc_run_from_the_deployment_form_runs_and_a_running_run_is_cancelled(
    browser, stratus_server, tmp_path, agents_for  # noqa: F811
):
    api, client = stratus_server.url, client_for(stratus_server.url)
    tag = f"ui{uuid4().hex[:8]}"
    pool, name = f"{tag}-pool", f"{tag}-adhoc"
    make_pool(api, tmp_path, pool)
    deploy(api, tmp_path, AWS_ENV, pool, name)
    agents = agents_for(api, AWS_ENV)
    agents.start(pool)

    page = Page(browser, api)

    # A run started elsewhere shows up in an open, filtered runs list without a reload.
    page.open(f"/flow-runs?deployment={name}")
    assert "No flow runs." in page.text()
    browser.execute_script("window.stratusMarker = 'same page'")
    deployment_id = client(lambda c: c.read_deployment_by_name(f"work/{name}")).id
    elsewhere = client(lambda c: c.create_flow_run_from_deployment(deployment_id, parameters={"sleep": 0}))
    page.wait_for(lambda: elsewhere.name in page.text(), "the new run in the open list", timeout=20)
    assert browser.execute_script("return window.stratusMarker") == "same page", "the page was reloaded"
    page.checked("flow-runs-live")

    # The pool's page: the agent's heartbeat, and a run waiting for tomorrow.
    from prefect.states import Scheduled
    from datetime import datetime, timedelta, timezone

    later = client(lambda c: c.create_flow_run_from_deployment(
        deployment_id, state=Scheduled(scheduled_time=datetime.now(timezone.utc) + timedelta(days=1))))
    page.open("/work-pools").follow(pool)
    page.wait_for(lambda: "agent-0" in page.text() and "ONLINE" in page.text().upper(), "the agent's heartbeat")
    queue_row = [r for r in page.css("table tr") if r.text.startswith("default")][0]
    assert "NOT READY" not in queue_row.text and "READY" in queue_row.text, queue_row.text
    assert later.name in page.text(), "the waiting run is not listed"
    page.checked("work-pool-with-agent")
    client(lambda c: c.delete_flow_run(later.id))

    page.open("/deployments").follow(name, "deployment-form")

    def raw_parameters():
        details = browser.find_element("css selector", "#run-form details.raw")
        if details.get_attribute("open") is None:
            details.find_element("css selector", "summary").click()
        return browser.find_element("id", "parameters")

    def run_with(parameters):
        box = raw_parameters()
        box.clear()
        box.send_keys(parameters)
        browser.find_element("css selector", "#run-form button[type=submit]").click()
        page.wait_for(lambda: "/flow-runs/" in browser.current_url, "the new run's page")
        return browser.current_url.rsplit("/", 1)[-1].split("?")[0]

    # Bad JSON is refused on the page, and nothing is created.
    box = raw_parameters()
    box.clear()
    box.send_keys("{not json")
    browser.find_element("css selector", "#run-form button[type=submit]").click()
    page.wait_for(lambda: browser.find_element("id", "notice").is_displayed(), "the error notice")
    assert "/deployments/" in browser.current_url

    run_id = run_with('{"sleep": 0}')
    page.checked("ad-hoc-run-created")
    page.wait_for(lambda: page.run_state() == "Completed", "the run to complete (live refresh)", timeout=90)
    page.wait_for(lambda: "helper says packaged-helper" in page.text(), "the run's logs")
    page.checked("ad-hoc-run-completed")
    assert client(lambda c: c.read_flow_run(uid(run_id))).state.type.value == "COMPLETED"

    # Retried from its page: scheduled again, picked up again, completed a second time.
    retry = [b for b in page.css(".actions button") if b.text == "Retry"]
    assert retry, "no Retry button on a finished deployment run"
    retry[0].click()
    page.wait_for(lambda: client(lambda c: c.read_flow_run(uid(run_id))).run_count == 2
                  and page.run_state() == "Completed", "the retried run to complete again", timeout=90)
    page.checked("ad-hoc-run-retried")
    assert "AwaitingRetry" in page.text()

    # It appears in the runs list, filtered by deployment.
    page.open(f"/flow-runs?deployment={name}")
    assert run_id in "".join(a.get_attribute("href") for a in page.css("table.runs a.run-link"))

    # A long run, cancelled from its page while it runs.
    page.open("/deployments").follow(name)
    run_id = run_with('{"sleep": 600}')
    page.wait_for(lambda: page.run_state() == "Running", "the run to start", timeout=90)
    page.checked("running-run")
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    browser.find_element("css selector", "button.danger").click()
    WebDriverWait(browser, 10).until(EC.alert_is_present()).accept()
    page.wait_for(lambda: page.run_state() == "Cancelled", "the run to be cancelled", timeout=90)
    page.checked("cancelled-run")
    [run] = wait_for(client, [uid(run_id)], {"CANCELLED"}, 30, agents)
    assert run.state.name == "Cancelled"
