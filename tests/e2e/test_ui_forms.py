"""Everything a Prefect user creates and edits in Prefect's UI, done in Stratus's UI in a real
headless Chromium, and checked through the API with the stock client: variables, tag and
global concurrency limits, work pools and their queues, blocks from the catalog (forms built
from each type's schema, nested blocks, secrets never shown back), deployments (typed
parameters, edits, schedules with a preview), and a run paused for input resumed from its
form. Screenshots go with the others (STRATUS_UI_SCREENSHOTS)."""

from uuid import uuid4

import pytest
from conftest import AWS_ENV

from _support import uid
from test_stratus_agent import client_for, deploy, make_pool
from test_ui_browser import Page, browser  # noqa: F401  (fixture)

pytestmark = pytest.mark.stratus_only


def row_of(page, table_id, name):
    rows = [r for r in page.css(f"#{table_id} tbody tr") if r.get_attribute("data-name") == name]
    return rows[0] if rows else None


def status_of(client, path):
    """The status a GET of `path` answers (the stock client raises on 4xx)."""
    from prefect.exceptions import PrefectHTTPStatusError

    try:
        return client(lambda c: c._client.get(path)).status_code
    except PrefectHTTPStatusError as e:
        return e.response.status_code


def row_text(page, table_id, name):
    row = row_of(page, table_id, name)
    return row.text if row else ""


def fill(form, name, value):
    field = form.find_element("name", name)
    field.clear()
    field.send_keys(value)


def submit(form):
    form.find_element("css selector", "button[type=submit]").click()


def open_editor(row):
    row.find_element("css selector", "details summary").click()
    return row.find_element("css selector", "details form")


def confirm(browser):
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 10).until(EC.alert_is_present()).accept()


def hold_a_slot(client, tag):
    """A task run tagged `tag` enters Running, which takes one of the tag's slots."""

    async def go(c):
        flow = (await c._client.post("/flows/", json={"name": f"{tag}-flow"})).json()
        run = (await c._client.post("/flow_runs/", json={"flow_id": flow["id"]})).json()
        await c._client.post(f"/flow_runs/{run['id']}/set_state", json={"state": {"type": "RUNNING"}})
        task = (await c._client.post("/task_runs/", json={
            "flow_run_id": run["id"], "task_key": "t", "dynamic_key": "0", "name": "t-0", "tags": [tag]})).json()
        answer = (await c._client.post(f"/task_runs/{task['id']}/set_state", json={"state": {"type": "RUNNING"}})).json()
        assert answer["status"] == "ACCEPT", answer

    client(go)


def test_variables_and_concurrency_limits_are_created_edited_reset_and_deleted(browser, stratus_server):  # noqa: F811
    api, client = stratus_server.url, client_for(stratus_server.url)
    tag = f"f{uuid4().hex[:8]}"
    page = Page(browser, api)

    # A variable: created, edited (value, tags and name), deleted.
    page.open("/variables")
    form = browser.find_element("id", "create-variable")
    fill(form, "name", f"{tag}_region")
    fill(form, "value", "eu-west-1")
    fill(form, "tags", "prod, eu")
    submit(form)
    page.wait_for(lambda: row_of(page, "variables", f"{tag}_region"), "the new variable")
    page.checked("variable-created")
    made = client(lambda c: c.read_variable_by_name(f"{tag}_region"))
    assert (made.value, made.tags) == ("eu-west-1", ["prod", "eu"])
    form = open_editor(row_of(page, "variables", f"{tag}_region"))
    fill(form, "name", f"{tag}_zone")
    fill(form, "value", "eu-west-2")
    fill(form, "tags", "dev")
    page.checked("variable-editing")
    submit(form)
    page.wait_for(lambda: row_of(page, "variables", f"{tag}_zone"), "the renamed variable")
    assert client(lambda c: c.read_variable_by_name(f"{tag}_region")) is None
    edited = client(lambda c: c.read_variable_by_name(f"{tag}_zone"))
    assert (edited.value, edited.tags) == ("eu-west-2", ["dev"])
    row_of(page, "variables", f"{tag}_zone").find_element("css selector", "button.danger").click()
    confirm(browser)
    page.wait_for(lambda: row_of(page, "variables", f"{tag}_zone") is None, "the variable to go")
    assert client(lambda c: c.read_variable_by_name(f"{tag}_zone")) is None

    # A tag limit: created, its limit changed, its slots reset, deleted.
    page.open("/concurrency-limits")
    form = browser.find_element("id", "create-tag-limit")
    fill(form, "tag", tag)
    fill(form, "concurrency_limit", "3")
    submit(form)
    page.wait_for(lambda: row_of(page, "tag-limits", tag), "the new tag limit")
    limit = client(lambda c: c.read_concurrency_limit_by_tag(tag))
    assert limit.concurrency_limit == 3
    hold_a_slot(client, tag)
    assert len(client(lambda c: c.read_concurrency_limit_by_tag(tag)).active_slots) == 1
    page.open("/concurrency-limits")
    form = open_editor(row_of(page, "tag-limits", tag))
    fill(form, "concurrency_limit", "5")
    submit(form)
    page.wait_for(lambda: "5" in row_text(page, "tag-limits", tag).split(), "the new limit")
    assert client(lambda c: c.read_concurrency_limit_by_tag(tag)).concurrency_limit == 5
    row = row_of(page, "tag-limits", tag)
    [reset] = [b for b in row.find_elements("css selector", "button") if b.text == "Reset"]
    reset.click()
    confirm(browser)
    page.wait_for(lambda: client(lambda c: c.read_concurrency_limit_by_tag(tag)).active_slots == [], "the slots to free")
    page.checked("tag-limit-reset")
    page.open("/concurrency-limits")
    row_of(page, "tag-limits", tag).find_element("css selector", "button.danger").click()
    confirm(browser)
    page.wait_for(lambda: row_of(page, "tag-limits", tag) is None, "the tag limit to go")
    assert not [l for l in client(lambda c: c.read_concurrency_limits(limit=200, offset=0)) if l.tag == tag]

    # A global limit: created inactive with a decay, edited, reset, deleted.
    name = f"{tag}-global"
    form = browser.find_element("id", "create-global-limit")
    fill(form, "name", name)
    fill(form, "limit", "4")
    fill(form, "slot_decay_per_second", "0.5")
    form.find_element("name", "active").click()  # off
    submit(form)
    page.wait_for(lambda: row_of(page, "global-limits", name), "the new global limit")
    read = lambda: client(lambda c: c._client.get(f"/v2/concurrency_limits/{name}")).json()  # noqa: E731
    made = read()
    assert (made["limit"], made["slot_decay_per_second"], made["active"]) == (4, 0.5, False), made
    client(lambda c: c._client.patch(f"/v2/concurrency_limits/{name}", json={"active_slots": 2}))
    form = open_editor(row_of(page, "global-limits", name))
    fill(form, "limit", "6")
    form.find_element("name", "active").click()  # on
    page.checked("global-limit-editing")
    submit(form)
    page.wait_for(lambda: read()["limit"] == 6, "the edit")
    assert read()["active"] is True and read()["active_slots"] == 2
    page.open("/concurrency-limits")
    [reset] = [b for b in row_of(page, "global-limits", name).find_elements("css selector", "button") if b.text == "Reset"]
    reset.click()
    confirm(browser)
    page.wait_for(lambda: read()["active_slots"] == 0, "the global slots to free")
    page.open("/concurrency-limits", "concurrency-limits-edited")
    row_of(page, "global-limits", name).find_element("css selector", "button.danger").click()
    confirm(browser)
    page.wait_for(lambda: row_of(page, "global-limits", name) is None, "the global limit to go")
    assert status_of(client, f"/v2/concurrency_limits/{name}") == 404

    # Bad input is refused with the API's reason, and nothing is made.
    form = browser.find_element("id", "create-global-limit")
    fill(form, "name", f"{tag}-bad")
    fill(form, "limit", "-1")
    browser.execute_script("arguments[0].noValidate = true", form)
    submit(form)
    page.wait_for(lambda: browser.find_element("id", "notice").is_displayed(), "the error notice")
    page.forget_console()
    assert status_of(client, f"/v2/concurrency_limits/{tag}-bad") == 404


def test_a_work_pool_and_its_queues_are_edited_from_the_ui(browser, stratus_server, tmp_path):  # noqa: F811
    api, client = stratus_server.url, client_for(stratus_server.url)
    pool = f"f{uuid4().hex[:8]}-pool"
    make_pool(api, tmp_path, pool)
    page = Page(browser, api)
    page.open(f"/work-pools/{pool}")

    form = browser.find_element("id", "edit-pool")
    fill(form, "description", "nightly batch")
    fill(form, "concurrency_limit", "7")
    template = client(lambda c: c.read_work_pool(pool)).base_job_template
    template["variables"]["properties"]["env"]["default"] = {"STAGE": "prod"}
    import json

    fill(form, "base_job_template", json.dumps(template))
    submit(form)
    page.wait_for(lambda: client(lambda c: c.read_work_pool(pool)).concurrency_limit == 7, "the pool edit")
    edited = client(lambda c: c.read_work_pool(pool))
    assert edited.description == "nightly batch"
    assert edited.base_job_template["variables"]["properties"]["env"]["default"] == {"STAGE": "prod"}
    # Cleared: no limit.
    page.open(f"/work-pools/{pool}")
    form = browser.find_element("id", "edit-pool")
    form.find_element("name", "concurrency_limit").clear()
    submit(form)
    page.wait_for(lambda: client(lambda c: c.read_work_pool(pool)).concurrency_limit is None, "the limit to clear")

    # A queue: added, edited, paused, resumed, deleted.
    page.open(f"/work-pools/{pool}")
    form = browser.find_element("id", "create-queue")
    fill(form, "name", "high-memory")
    fill(form, "priority", "5")
    fill(form, "concurrency_limit", "2")
    submit(form)
    page.wait_for(lambda: row_of(page, "queues", "high-memory"), "the new queue")
    queue = client(lambda c: c.read_work_queue_by_name("high-memory", work_pool_name=pool))
    assert (queue.priority, queue.concurrency_limit) == (5, 2)
    form = open_editor(row_of(page, "queues", "high-memory"))
    fill(form, "description", "big machines")
    fill(form, "priority", "3")
    form.find_element("name", "concurrency_limit").clear()
    page.checked("work-queue-editing")
    submit(form)
    page.wait_for(lambda: client(lambda c: c.read_work_queue_by_name("high-memory", work_pool_name=pool)).priority == 3,
                  "the queue edit")
    queue = client(lambda c: c.read_work_queue_by_name("high-memory", work_pool_name=pool))
    assert (queue.description, queue.concurrency_limit) == ("big machines", None)
    page.open(f"/work-pools/{pool}")
    [pause] = [b for b in row_of(page, "queues", "high-memory").find_elements("css selector", "button") if b.text == "Pause"]
    pause.click()
    page.wait_for(lambda: client(lambda c: c.read_work_queue_by_name("high-memory", work_pool_name=pool)).is_paused,
                  "the queue to pause")
    page.open(f"/work-pools/{pool}", "work-pool-queues")
    [resume] = [b for b in row_of(page, "queues", "high-memory").find_elements("css selector", "button") if b.text == "Resume"]
    resume.click()
    page.wait_for(lambda: not client(lambda c: c.read_work_queue_by_name("high-memory", work_pool_name=pool)).is_paused,
                  "the queue to resume")
    page.open(f"/work-pools/{pool}")
    assert not row_of(page, "queues", "default").find_elements("css selector", "button.danger"), "the default queue is deletable"
    row_of(page, "queues", "high-memory").find_element("css selector", "button.danger").click()
    confirm(browser)
    page.wait_for(lambda: row_of(page, "queues", "high-memory") is None, "the queue to go")
    names = [q.name for q in client(lambda c: c.read_work_queues(work_pool_name=pool))]
    assert names == ["default"], names

    # The pool itself, deleted from its page.
    [delete] = [b for b in page.css("button.danger") if b.text == "Delete the pool"]
    delete.click()
    confirm(browser)
    page.wait_for(lambda: browser.current_url.endswith("/work-pools"), "the pools list")
    assert pool not in page.text()


ANONYMOUS_NESTED = """
import json
from prefect.infrastructure.container import DockerContainer, DockerRegistry

block = DockerContainer(image="alpine", image_registry=DockerRegistry(
    username="anon", password="hidden-{tag}", registry_url="r.example.com"))
block.save("{tag}-anon-nested")
print(json.dumps({{"id": str(block._block_document_id)}}))
"""


def test_blocks_are_made_from_the_catalog_with_nested_blocks_and_secrets_never_shown(  # noqa: F811
    browser, stratus_server, run_flow  # noqa: F811
):
    api, client = stratus_server.url, client_for(stratus_server.url)
    tag = f"f{uuid4().hex[:8]}"
    page = Page(browser, api)
    # Logos live on Prefect's CDN, which this machine may not reach.
    page.ignore_console("Failed to load resource: net::ERR_")

    page.open("/blocks").follow("Add a block", "block-catalog")
    names = [e.text for e in page.css(".catalog .type-name")]
    assert "Docker Registry" in names and "Docker Container" in names, names
    page.navigate(page.css(".catalog a[href='/blocks/catalog/docker-registry']")[0], "block-create")

    def field(label):
        return browser.find_element("css selector", f"[data-field='{label}']")

    form = browser.find_element("id", "block-form")
    fill(form, "name", f"{tag}-registry")
    field("username").send_keys("robot")
    assert field("password").get_attribute("type") == "password"
    field("password").send_keys(f"hunter2-{tag}")
    field("registry_url").send_keys("registry.example.com")
    assert field("reauth").is_selected(), "the schema's default (true) is not shown"
    field("reauth").click()
    submit(form)
    page.wait_for(lambda: "/blocks/" in browser.current_url and "catalog" not in browser.current_url, "the block's page")
    page.checked("block-created")
    assert f"hunter2-{tag}" not in browser.page_source
    registry_id = browser.current_url.rsplit("/", 1)[-1]
    doc = client(lambda c: c.read_block_document(uid(registry_id), include_secrets=True))
    assert doc.data == {"username": "robot", "password": f"hunter2-{tag}", "registry_url": "registry.example.com",
                        "reauth": False}, doc.data

    # Edited with the secret left as it was: it keeps its value and is never sent to the page.
    field("username").clear()
    field("username").send_keys("robot2")
    assert field("password").get_attribute("value") != f"hunter2-{tag}"
    submit(browser.find_element("id", "block-form"))
    page.wait_for(lambda: client(lambda c: c.read_block_document(uid(registry_id), include_secrets=True))
                  .data["username"] == "robot2", "the edit")
    doc = client(lambda c: c.read_block_document(uid(registry_id), include_secrets=True))
    assert doc.data["password"] == f"hunter2-{tag}", doc.data
    page.open(f"/blocks/{registry_id}", "block-edited")
    assert f"hunter2-{tag}" not in browser.page_source

    # A block that nests the first one, with an enum, a list and a JSON field.
    page.open("/blocks/catalog/docker-container")
    form = browser.find_element("id", "block-form")
    fill(form, "name", f"{tag}-container")
    field("image").send_keys("python:3.11")
    from selenium.webdriver.support.ui import Select

    Select(field("image_registry")).select_by_visible_text(f"{tag}-registry")
    Select(field("image_pull_policy")).select_by_visible_text("ALWAYS")
    add_volume = form.find_element("xpath", ".//fieldset[legend[text()='Volumes']]/button")
    add_volume.click()
    add_volume.click()
    items = form.find_elements("css selector", "[data-field^='volumes.']")
    items[0].send_keys("/a:/a")
    items[1].send_keys("/b:/b")
    field("env").send_keys('{"STAGE": "prod"}')
    page.checked("block-nested-form")
    submit(form)
    page.wait_for(lambda: "/blocks/" in browser.current_url and "catalog" not in browser.current_url, "the container's page")
    container_id = browser.current_url.rsplit("/", 1)[-1]
    doc = client(lambda c: c.read_block_document(uid(container_id), include_secrets=True))
    assert doc.data["image"] == "python:3.11" and doc.data["image_pull_policy"] == "ALWAYS"
    assert doc.data["volumes"] == ["/a:/a", "/b:/b"] and doc.data["env"] == {"STAGE": "prod"}, doc.data
    assert str(doc.block_document_references["image_registry"]["block_document"]["id"]) == registry_id
    # Its page shows the nested block chosen, and the nested secret hidden.
    assert Select(field("image_registry")).first_selected_option.text == f"{tag}-registry"
    assert f"hunter2-{tag}" not in browser.page_source

    # Bad JSON is refused on the page; nothing changes.
    field("env").clear()
    field("env").send_keys("{nope")
    submit(browser.find_element("id", "block-form"))
    page.wait_for(lambda: browser.find_element("id", "notice").is_displayed(), "the error notice")
    page.forget_console()
    assert client(lambda c: c.read_block_document(uid(container_id))).data["env"] == {"STAGE": "prod"}

    # A nested block the client saved inline (it was never saved by itself) survives an edit,
    # its secret too.
    anon = run_flow(ANONYMOUS_NESTED.format(tag=tag))["id"]
    page.open(f"/blocks/{anon}")
    assert f"hidden-{tag}" not in browser.page_source
    field("image").clear()
    field("image").send_keys("alpine:3")
    submit(browser.find_element("id", "block-form"))
    page.wait_for(lambda: client(lambda c: c.read_block_document(uid(anon))).data["image"] == "alpine:3", "the edit")
    kept = client(lambda c: c.read_block_document(uid(anon), include_secrets=True))
    assert kept.data["image_registry"]["username"] == "anon", kept.data
    assert kept.data["image_registry"]["password"] == f"hidden-{tag}", kept.data

    # Deleted, with confirmation.
    page.open(f"/blocks/{container_id}")
    page.css(".actions button.danger")[0].click()
    confirm(browser)
    page.wait_for(lambda: browser.current_url.endswith("/blocks"), "the blocks list")
    assert f"{tag}-container" not in page.text() and f"{tag}-registry" in page.text()


def test_a_deployment_runs_with_typed_parameters_and_is_edited_rescheduled_and_deleted(
    browser, stratus_server, tmp_path  # noqa: F811
):
    api, client = stratus_server.url, client_for(stratus_server.url)
    tag = f"f{uuid4().hex[:8]}"
    pool, name = f"{tag}-pool", f"{tag}-dep"
    make_pool(api, tmp_path, pool)
    other_pool = f"{tag}-other"
    make_pool(api, tmp_path, other_pool)
    deploy(api, tmp_path, AWS_ENV, pool, name)
    deployment = client(lambda c: c.read_deployment_by_name(f"work/{name}"))
    page = Page(browser, api)
    page.open(f"/deployments/{deployment.id}", "deployment-run-form")

    def field(form_id, name):
        return browser.find_element("css selector", f"#{form_id} [data-field='{name}']")

    # Typed fields from the parameter schema: a number and a string.
    assert field("run-form", "sleep").get_attribute("type") == "number"
    field("run-form", "marks").send_keys("/tmp/nowhere")
    field("run-form", "sleep").clear()
    field("run-form", "sleep").send_keys("0.25")
    submit(browser.find_element("id", "run-form"))
    page.wait_for(lambda: "/flow-runs/" in browser.current_url, "the new run's page")
    run = client(lambda c: c.read_flow_run(uid(browser.current_url.rsplit("/", 1)[-1].split("?")[0])))
    assert run.parameters["sleep"] == 0.25 and run.parameters["marks"] == "/tmp/nowhere", run.parameters

    # A value the schema refuses is refused as the API refuses it (enforce_parameter_schema).
    client(lambda c: c._client.patch(f"/deployments/{deployment.id}", json={"enforce_parameter_schema": True}))
    page.open(f"/deployments/{deployment.id}")
    run_form = browser.find_element("id", "run-form")
    run_form.find_element("css selector", "details.raw summary").click()
    raw = browser.find_element("id", "parameters")
    raw.clear()
    raw.send_keys('{"sleep": "not a number"}')
    submit(run_form)
    page.wait_for(lambda: browser.find_element("id", "notice").is_displayed(), "the error notice")
    page.forget_console()
    assert "/deployments/" in browser.current_url

    # Edited: description, tags, pool and queue, job variables, default parameters.
    page.open(f"/deployments/{deployment.id}")
    form = browser.find_element("id", "edit-deployment")
    fill(form, "description", "the nightly load")
    fill(form, "tags", "nightly, etl")
    from selenium.webdriver.support.ui import Select

    Select(form.find_element("name", "work_pool_name")).select_by_visible_text(other_pool)
    form.find_element("name", "work_queue_name").clear()
    fill(form, "job_variables", '{"env": {"STAGE": "prod"}}')
    field("edit-deployment", "sleep").clear()
    field("edit-deployment", "sleep").send_keys("2")
    submit(form)
    page.wait_for(lambda: client(lambda c: c.read_deployment(deployment.id)).description == "the nightly load", "the edit")
    edited = client(lambda c: c.read_deployment(deployment.id))
    assert edited.tags == ["nightly", "etl"] and edited.work_pool_name == other_pool, edited
    assert edited.work_queue_name == "default" and edited.job_variables == {"env": {"STAGE": "prod"}}, edited
    assert edited.parameters["sleep"] == 2, edited.parameters

    # A cron schedule with a time zone: previewed, added, edited into an interval, removed.
    page.open(f"/deployments/{deployment.id}")
    [add] = [d for d in page.css("details.inline") if d.find_element("css selector", "summary").text == "Add a schedule"]
    add.find_element("css selector", "summary").click()
    form = browser.find_element("id", "add-schedule")
    fill(form, "cron", "0 9 * * 1-5")
    fill(form, "timezone", "Europe/Paris")
    form.find_element("css selector", "button[data-preview]").click()
    page.wait_for(lambda: len(form.find_elements("css selector", ".preview li")) == 5, "the preview")
    first = form.find_elements("css selector", ".preview li")[0].text
    assert "07:00:00 UTC" in first or "08:00:00 UTC" in first, first  # 09:00 in Paris
    page.checked("schedule-preview")
    # A bad cron is explained before anything is saved.
    fill(form, "cron", "61 * * * *")
    form.find_element("css selector", "button[data-preview]").click()
    page.wait_for(lambda: browser.find_element("id", "notice").is_displayed(), "the preview's error")
    page.forget_console()
    fill(form, "cron", "0 9 * * 1-5")
    submit(form)
    page.wait_for(lambda: client(lambda c: c.read_deployment_schedules(deployment.id)), "the new schedule")
    [schedule] = client(lambda c: c.read_deployment_schedules(deployment.id))
    assert (schedule.schedule.cron, schedule.schedule.timezone, schedule.active) == ("0 9 * * 1-5", "Europe/Paris", True)
    page.open(f"/deployments/{deployment.id}")
    page.wait_for(lambda: "next:" in page.text(), "the next runs")
    form = open_editor(browser.find_element("css selector", f"li[data-schedule='{schedule.id}']"))
    Select(form.find_element("name", "kind")).select_by_value("interval")
    fill(form, "interval", "5400")
    fill(form, "anchor_date", "2026-01-01T00:30:00Z")
    form.find_element("name", "timezone").clear()
    submit(form)
    page.wait_for(lambda: client(lambda c: c.read_deployment_schedules(deployment.id))[0].schedule.__class__.__name__
                  == "IntervalSchedule", "the schedule to become an interval")
    [schedule] = client(lambda c: c.read_deployment_schedules(deployment.id))
    assert schedule.schedule.interval.total_seconds() == 5400
    page.open(f"/deployments/{deployment.id}", "deployment-edited")
    assert "every 90 minutes" in page.text()
    browser.find_element("css selector", f"li[data-schedule='{schedule.id}'] button.danger").click()
    confirm(browser)
    page.wait_for(lambda: not client(lambda c: c.read_deployment_schedules(deployment.id)), "the schedule to go")

    # Deleted.
    page.open(f"/deployments/{deployment.id}")
    [delete] = [b for b in page.css(".actions button.danger") if b.text == "Delete"]
    delete.click()
    confirm(browser)
    page.wait_for(lambda: browser.current_url.endswith("/deployments"), "the deployments list")
    assert name not in page.text()


PAUSED_FOR_INPUT = """
import json
from prefect import flow, pause_flow_run
from prefect.input import RunInput

class Approval(RunInput):
    approver: str
    copies: int = 1
    urgent: bool = False

@flow(name="{name}")
def waits():
    answer = pause_flow_run(wait_for_input=Approval, timeout=300, poll_interval=1)
    return {{"approver": answer.approver, "copies": answer.copies, "urgent": answer.urgent}}

if __name__ == "__main__":
    state = waits(return_state=True)
    print(json.dumps({{"type": state.type.value, "result": state.result()}}))
"""


def test_a_run_paused_for_input_is_resumed_from_its_form(browser, stratus_server, scripts):  # noqa: F811
    api, client = stratus_server.url, client_for(stratus_server.url)
    name = f"f{uuid4().hex[:8]}-approval"
    proc = scripts.start(PAUSED_FOR_INPUT.format(name=name))
    try:
        page = Page(browser, api)

        def paused_run():
            runs = [r for r in client(lambda c: c.read_flow_runs()) if r.name and r.state and r.state.type.value == "PAUSED"
                    and client(lambda c: c.read_flow(r.flow_id)).name == name]
            return runs[0] if runs else None

        page.wait_for(paused_run, "the run to pause", timeout=90)
        run = paused_run()
        page.open(f"/flow-runs/{run.id}", "paused-for-input")
        assert "waits for input" in page.text()
        form = browser.find_element("id", "resume-form")

        assert form.find_element("css selector", "[data-field='copies']").get_attribute("value") == "1", "no default"

        # Input the schema refuses is refused as the API refuses it, and the run stays paused.
        form.find_element("css selector", "details.raw summary").click()
        raw = browser.find_element("id", "run-input-json")
        raw.clear()
        raw.send_keys('{"approver": "ada", "copies": "many"}')
        submit(form)
        page.wait_for(lambda: browser.find_element("id", "notice").is_displayed(), "the refusal")
        page.forget_console()
        assert "copies" in browser.find_element("id", "notice").text
        assert client(lambda c: c.read_flow_run(run.id)).state.type.value == "PAUSED"
        form.find_element("css selector", "details.raw summary").click()  # back to the fields
        # The fields are rebuilt from the JSON on the details' `toggle` event, which fires
        # after the click returns: the field found first may be the one being replaced.
        page.wait_for(
            lambda: form.find_element("css selector", "[data-field='approver']").get_attribute("value") == "ada",
            "the fields rebuilt from the JSON",
        )
        form.find_element("css selector", "[data-field='approver']").clear()

        form.find_element("css selector", "[data-field='approver']").send_keys("ada")
        copies = form.find_element("css selector", "[data-field='copies']")
        copies.clear()
        copies.send_keys("3")
        form.find_element("css selector", "[data-field='urgent']").click()
        submit(form)
        out = scripts.wait(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert out == {"type": "COMPLETED", "result": {"approver": "ada", "copies": 3, "urgent": True}}, out


LONG_RUN = """
import json
from prefect import flow, task, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact, create_link_artifact

@task
def chatty(n):
    log = get_run_logger()
    for i in range(n):
        log.info("task line %04d", i)
    return n

@flow(name="{name}")
def long_run():
    log = get_run_logger()
    for i in range(1100):
        log.info("flow line %04d", i)
    log.warning("the needle in the haystack")
    chatty(150)
    create_markdown_artifact(key="{name}-report", markdown={hostile!r})
    create_table_artifact(key="{name}-table", table=[{{"city": "Lyon", "n": 3}}, {{"city": "<b>Oslo</b>", "n": 4}}])
    create_link_artifact(key="{name}-link", link="https://docs.prefect.io", link_text="the docs")

if __name__ == "__main__":
    state = long_run(return_state=True)
    print(json.dumps({{"flow_run_id": str(state.state_details.flow_run_id), "type": state.type.value}}))
"""

HOSTILE = ("# Weekly report\n\n<script>window.pwned = 1</script>\n\n<img src=x onerror=\"window.pwned = 2\">\n\n"
           "[click me](javascript:window.pwned=3) [also](JaVaScRiPt:window.pwned=4) [docs](https://docs.prefect.io)\n\n"
           "| a | b |\n|---|---|\n| 1 | 2 |\n")


def test_a_long_run_s_logs_its_task_run_and_hostile_artifacts_are_read_in_the_browser(browser, stratus_server, run_flow):  # noqa: F811
    api = stratus_server.url
    name = f"f{uuid4().hex[:8]}-long"
    out = run_flow(LONG_RUN.format(name=name, hostile=HOSTILE))
    assert out["type"] == "COMPLETED", out
    run_id = out["flow_run_id"]
    # Prefect 2.20's client has no progress artifact; Prefect 3's UI shows them, and so does Stratus.
    client_for(api)(lambda c: c._client.post("/artifacts/", json={"type": "progress", "data": 42.0, "flow_run_id": run_id}))
    page = Page(browser, api)

    # The run is a dot on the dashboard's scatter plot and on its flow's, linking to it.
    page.open("/", "dashboard-scatter")
    assert page.css(f"svg.scatter a[href='/flow-runs/{run_id}'] circle.dot-completed"), "no dot for the run"
    page.open(f"/flow-runs/{run_id}").navigate(page.css(".crumbs a")[0], "flow-scatter")
    assert page.css(f"svg.scatter a[href='/flow-runs/{run_id}'] circle")

    # Every line, page by page, past the 500 the run page shows.
    page.open(f"/flow-runs/{run_id}")
    page.follow("Every line", "run-logs")
    seen = []
    while True:
        seen += [td.text for td in page.css("#all-logs td.msg")]
        later = page.css("a[rel=next]")
        if not later:
            break
        page.navigate(later[0])
    flow_lines = [m for m in seen if m.startswith("flow line")]
    assert flow_lines == [f"flow line {i:04d}" for i in range(1100)], (len(flow_lines), flow_lines[:3])
    assert len([m for m in seen if m.startswith("task line")]) == 150
    # Searched, and filtered by level and by task.
    form = browser.find_element("id", "log-filters")
    fill(form, "q", "NEEDLE in the")
    page.navigate(form.find_element("css selector", "button[type=submit]"), "run-logs-search")
    assert [td.text for td in page.css("#all-logs td.msg")] == ["the needle in the haystack"]
    page.open(f"/flow-runs/{run_id}/logs?level=30")
    assert [td.text for td in page.css("#all-logs td.msg")] == ["the needle in the haystack"]
    from selenium.webdriver.support.ui import Select

    page.open(f"/flow-runs/{run_id}/logs")
    form = browser.find_element("id", "log-filters")
    Select(form.find_element("name", "task")).select_by_visible_text("chatty-0")
    page.navigate(form.find_element("css selector", "button[type=submit]"))
    of_task = [td.text for td in page.css("#all-logs td.msg")]
    assert "task line 0000" in of_task and not [m for m in of_task if m.startswith("flow line")], of_task[:5]
    # The download link names every line.
    href = page.css(".actions a[download]")[0].get_attribute("href")
    import urllib.request

    with urllib.request.urlopen(href) as res:
        text = res.read().decode()
    assert len([l for l in text.splitlines() if "| task line " in l]) == 150 and "flow line" not in text

    # The task run's page, reached from the run's table.
    page.open(f"/flow-runs/{run_id}")
    page.navigate(page.css("table a[href^='/task-runs/']")[0], "task-run")
    assert "chatty-0" in page.text() and "Completed" in page.text()
    page.follow("Every line of this task")
    assert "task line 0000" in [td.text for td in page.css("#all-logs td.msg")]

    # Artifacts: hostile markdown is inert, tables are tables, links and progress shown.
    page.open("/artifacts").follow(f"{name}-report", "artifact-markdown")
    assert page.css("#artifact-body h1")[0].text == "Weekly report"
    assert browser.execute_script("return window.pwned") is None
    assert not page.css("#artifact-body script, #artifact-body img[onerror], #artifact-body [onerror]")
    hrefs = [a.get_attribute("href") for a in page.css("#artifact-body a")]
    assert not [h for h in hrefs if h and h.lower().startswith("javascript")], hrefs
    assert "https://docs.prefect.io/" in hrefs, hrefs
    assert "<script>window.pwned = 1</script>" in page.text(), "the script is not shown as text"
    assert page.css("#artifact-body table td")[0].text == "1"
    page.open("/artifacts").follow(f"{name}-table", "artifact-table")
    cells = [td.text for td in page.css("table.artifact-table td")]
    assert cells == ["Lyon", "3", "<b>Oslo</b>", "4"], cells
    page.open("/artifacts").follow(f"{name}-link")
    assert page.css("#artifact-body a[href='https://docs.prefect.io']")[0].text == "the docs"
    page.open("/artifacts")
    progress = page.css("table a[href^='/artifacts/']:not([href^='/artifacts/key/'])")
    assert progress, "the progress artifact is not listed"
    page.navigate(progress[0], "artifact-progress")
    assert page.css("progress")[0].get_attribute("value") == "42"

    # The new pages are readable on a phone: nothing wider than the screen.
    page.ignore_console("Failed to load resource: net::ERR_")  # block types' logos live on the internet
    browser.set_window_size(390, 844)
    try:
        for path, shot in [(f"/flow-runs/{run_id}/logs", "phone-run-logs"), ("/blocks/catalog", "phone-block-catalog"),
                           ("/blocks/catalog/docker-container", "phone-block-form"),
                           (f"/artifacts/key/{name}-report", "phone-artifact"), ("/", "phone-dashboard-scatter"),
                           ("/concurrency-limits", None), ("/variables", None)]:
            page.open(path, shot)
            assert page.fits_a_phone(), f"{path} is wider than a phone screen"
    finally:
        browser.set_window_size(1280, 1000)


def test_a_run_s_state_is_changed_by_hand_and_the_run_deleted(browser, stratus_server, run_flow):  # noqa: F811
    api, client = stratus_server.url, client_for(stratus_server.url)
    name = f"f{uuid4().hex[:8]}-marked"
    out = run_flow(f"""
import json
from prefect import flow

@flow(name="{name}")
def marked():
    return 1

if __name__ == "__main__":
    state = marked(return_state=True)
    print(json.dumps({{"flow_run_id": str(state.state_details.flow_run_id)}}))
""")
    run_id = out["flow_run_id"]
    page = Page(browser, api)
    page.open(f"/flow-runs/{run_id}")
    browser.find_element("css selector", "#change-state summary").click()
    form = browser.find_element("css selector", "#change-state form")
    from selenium.webdriver.support.ui import Select

    Select(form.find_element("name", "type")).select_by_visible_text("Failed")
    fill(form, "message", "the numbers were wrong")
    page.checked("change-state")
    submit(form)
    page.wait_for(lambda: page.run_state() == "Failed", "the new state")
    state = client(lambda c: c.read_flow_run(uid(run_id))).state
    assert (state.type.value, state.message) == ("FAILED", "the numbers were wrong")

    [delete] = [b for b in page.css(".actions button.danger") if b.text == "Delete"]
    delete.click()
    confirm(browser)
    page.wait_for(lambda: browser.current_url.endswith("/flow-runs"), "the runs list")
    assert status_of(client, f"/flow_runs/{run_id}") == 404
