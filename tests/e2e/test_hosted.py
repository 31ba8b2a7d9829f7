"""A Stratus that requires API keys (STRATUS_AUTH=required, as on AWS), used as people
will: keys made with `stratus api-key create`, the stock client and CLI sending
PREFECT_API_KEY, roles refusing what they may not do, a revoked key stopping within the
cache's seconds, and the web UI in a real browser: signing in with a key, changing
something (the page sends its CSRF token), a form posted without its token refused,
signing out."""

import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path
from uuid import uuid4

import pytest
from conftest import EMULATED, STRATUS_BIN, _server

from test_ui_browser import Page, browser  # noqa: F401  (fixture)

pytestmark = [
    pytest.mark.stratus_only,
    pytest.mark.skipif(EMULATED, reason="the emulated suite runs its stack open; this one starts its own server"),
]


@pytest.fixture(scope="module")
def hosted():
    yield from _server({"STRATUS_AUTH": "required", "STRATUS_AUTH_CACHE_SECONDS": "1"})


def api_key(server, role, *extra):
    """A key made as an operator would, with the CLI over the server's database."""
    out = subprocess.run(
        [STRATUS_BIN, "api-key", "create", "--name", f"e2e-{role}", "--role", role, *extra],
        env=dict(os.environ, STRATUS_DATABASE_URL=server.database_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip().splitlines()[-1]
    assert key.startswith("stratus_"), out.stdout
    key_id = out.stdout.split()[3]
    return key, key_id


def client_env(server, key, tmp_path):
    env = dict(os.environ, PREFECT_API_URL=server.url, PREFECT_HOME=str(tmp_path / f"home-{uuid4().hex[:6]}"))
    env.pop("PREFECT_API_KEY", None)
    if key:
        env["PREFECT_API_KEY"] = key
    return env


FLOW = """
import json
from prefect import flow, task

@task
def double(x):
    return x * 2

@flow(name="{name}", log_prints=True)
def hosted_flow():
    print("hello from a hosted flow")
    return double(double(21))

state = hosted_flow(return_state=True)
print(json.dumps({{"type": state.type.value, "id": str(state.state_details.flow_run_id)}}))
"""


def run_flow(server, key, tmp_path, name):
    script = tmp_path / f"{name}.py"
    script.write_text(textwrap.dedent(FLOW.format(name=name)))
    return subprocess.run(
        [sys.executable, str(script)],
        env=client_env(server, key, tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def prefect_cli(server, key, tmp_path, *args):
    return subprocess.run(
        [str(Path(sys.executable).parent / "prefect"), *args],
        env=dict(client_env(server, key, tmp_path), COLUMNS="250"),
        capture_output=True,
        text=True,
        timeout=120,
    )


def http(server, method, path, key=None, body=None):
    req = urllib.request.Request(server.url + path, method=method, data=None if body is None else json.dumps(body).encode())
    req.add_header("content-type", "application/json")
    if key:
        req.add_header("authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            return res.status, json.loads(res.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def test_the_stock_client_and_cli_work_with_a_key_and_its_role(hosted, tmp_path):
    runner, runner_id = api_key(hosted, "runner")
    viewer, _ = api_key(hosted, "viewer")
    developer, _ = api_key(hosted, "developer")

    assert http(hosted, "GET", "/health")[0] == 200
    assert http(hosted, "POST", "/flows/filter", None, {})[0] == 401

    without = run_flow(hosted, None, tmp_path, "hosted-nokey")
    assert without.returncode != 0 and "401" in without.stderr, without.stderr[-2000:]

    ran = run_flow(hosted, runner, tmp_path, "hosted-flow")
    assert ran.returncode == 0, ran.stderr[-3000:]
    result = json.loads(ran.stdout.strip().splitlines()[-1])
    assert result["type"] == "COMPLETED"
    status, run = http(hosted, "GET", f"/flow_runs/{result['id']}", viewer)
    assert status == 200 and run["state"]["type"] == "COMPLETED"
    status, tasks = http(hosted, "POST", "/task_runs/filter", viewer, {"flow_runs": {"id": {"any_": [result["id"]]}}})
    assert status == 200 and len(tasks) == 2
    status, logs = http(hosted, "POST", "/logs/filter", viewer, {"logs": {"flow_run_id": {"any_": [result["id"]]}}})
    assert any("hello from a hosted flow" in line["message"] for line in logs)

    listed = prefect_cli(hosted, viewer, tmp_path, "flow-run", "ls")
    assert listed.returncode == 0 and "hosted-flow" not in listed.stderr, listed.stderr[-2000:]
    pool = f"hosted-{uuid4().hex[:6]}"
    refused = prefect_cli(hosted, viewer, tmp_path, "work-pool", "create", pool, "--type", "process")
    assert refused.returncode != 0 and "403" in (refused.stdout + refused.stderr), refused.stdout + refused.stderr
    refused = prefect_cli(hosted, runner, tmp_path, "work-pool", "create", pool, "--type", "process")
    assert refused.returncode != 0, "a runner may not create pools"
    created = prefect_cli(hosted, developer, tmp_path, "work-pool", "create", pool, "--type", "process")
    assert created.returncode == 0, created.stdout + created.stderr
    assert http(hosted, "GET", f"/work_pools/{pool}", viewer)[0] == 200

    revoked = subprocess.run(
        [STRATUS_BIN, "api-key", "revoke", runner_id],
        env=dict(os.environ, STRATUS_DATABASE_URL=hosted.database_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert revoked.returncode == 0, revoked.stderr
    time.sleep(1.2)  # STRATUS_AUTH_CACHE_SECONDS=1
    assert http(hosted, "POST", "/flows/filter", runner, {})[0] == 401
    after = run_flow(hosted, runner, tmp_path, "hosted-revoked")
    assert after.returncode != 0 and "401" in after.stderr


def test_the_web_ui_signs_in_works_refuses_a_form_without_its_token_and_signs_out(browser, hosted):  # noqa: F811
    from selenium.webdriver.common.by import By

    developer, _ = api_key(hosted, "developer")
    policy_status, policy = http(
        hosted, "POST", "/flow_run_notification_policies/", developer,
        {"state_names": ["Failed"], "tags": [], "block_document_id": _webhook_block(hosted, developer)},
    )
    assert policy_status == 201, policy
    page = Page(browser, hosted.url)
    browser.delete_all_cookies()

    # Signed out, every page leads to the login page.
    browser.get(page.base + "/notifications")
    page.wait_for(lambda: "/login" in browser.current_url, "the login page")
    page.checked("login")
    browser.find_element(By.NAME, "key").send_keys("stratus_not-a-key")
    browser.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()
    page.wait_for(lambda: "not valid here" in page.text(), "the refusal of a wrong key")
    browser.get_log("browser")  # the 401 it answered is logged as a failed load
    browser.find_element(By.NAME, "key").send_keys(developer)
    page.navigate(browser.find_element(By.CSS_SELECTOR, "form[action='/login'] button"), "signed-in-notifications")
    assert browser.current_url.endswith("/notifications"), browser.current_url
    assert "Sign out" in page.text() and "developer" in page.text()
    session = browser.get_cookie("stratus_session")
    assert session and session["httpOnly"], session

    # Working: Pause calls the API with the session's CSRF token.
    pause = next(b for b in page.css("button[data-api]") if b.text == "Pause")
    pause.click()
    page.wait_for(lambda: http(hosted, "GET", f"/flow_run_notification_policies/{policy['id']}", developer)[1]["is_active"] is False,
                  "the policy to be paused")
    # The button reloads the page once its call returns: wait for the reloaded page (it
    # offers Resume), or the reload lands after the form below and hides its answer.
    page.wait_for(lambda: any(b.text == "Resume" for b in page.css("button[data-api]")), "the reloaded page")

    # The same form without its token is refused, and the session stays.
    browser.execute_script(
        "const f = document.querySelector(\"form[action='/logout']\");"
        "f.querySelector(\"input[name=csrf_token]\").value = ''; f.submit();"
    )
    page.wait_for(lambda: "Not allowed" in browser.title, "the refusal")
    assert "CSRF token" in page.text()
    browser.get_log("browser")  # the 403 it answered is logged as a failed load
    page.open("/notifications")
    assert "Sign out" in page.text()

    # Signing out ends it: the login page again, and the pages ask for it.
    page.navigate(browser.find_element(By.CSS_SELECTOR, "form[action='/logout'] button"))
    assert "/login" in browser.current_url
    browser.get(page.base + "/flow-runs")
    page.wait_for(lambda: "/login" in browser.current_url, "the login page after signing out")


def _webhook_block(server, key):
    """A webhook block for the policy (its URL is never called here)."""
    status, block_type = http(server, "POST", "/block_types/", key, {"name": f"Hook {uuid4().hex[:6]}", "slug": f"hook-{uuid4().hex[:6]}"})
    assert status == 201, block_type
    fields = {"title": "Hook", "type": "object", "properties": {"url": {"type": "string"}},
              "block_type_slug": block_type["slug"], "secret_fields": [], "block_schema_references": {}}
    status, schema = http(server, "POST", "/block_schemas/", key, {"fields": fields, "block_type_id": block_type["id"], "capabilities": ["notify"]})
    assert status == 201, schema
    status, doc = http(server, "POST", "/block_documents/", key, {
        "name": f"hook-{uuid4().hex[:6]}", "block_type_id": block_type["id"], "block_schema_id": schema["id"],
        "data": {"url": "http://127.0.0.1:9/hook"},
    })
    assert status == 201, doc
    return doc["id"]


GREET = """
from prefect import flow, get_run_logger

@flow
def greet(name: str = "world"):
    get_run_logger().info("greeting %s", name)
    return f"hello {name}"
"""


def test_a_developer_deploys_a_runner_starts_it_and_the_stock_worker_runs_it_with_a_runner_key(hosted, tmp_path):
    developer, _ = api_key(hosted, "developer")
    runner, _ = api_key(hosted, "runner")
    viewer, _ = api_key(hosted, "viewer")
    pool = f"hosted-pool-{uuid4().hex[:6]}"
    (tmp_path / "greet_flow.py").write_text(textwrap.dedent(GREET))

    def cli(key, *args, ok=True):
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "prefect"), *args],
            env=dict(client_env(hosted, key, tmp_path), COLUMNS="250"),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if ok:
            assert proc.returncode == 0, f"prefect {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
        return proc

    cli(developer, "work-pool", "create", "--type", "process", pool)
    cli(developer, "--no-prompt", "deploy", "greet_flow.py:greet", "--name", "hosted", "--pool", pool)
    status, deployment = http(hosted, "GET", "/deployments/name/greet/hosted", runner)
    assert status == 200, deployment
    status, refused = http(hosted, "POST", f"/deployments/{deployment['id']}/create_flow_run", runner,
                           {"job_variables": {"env": {"LD_PRELOAD": "/tmp/x.so"}}})
    assert status == 403, "a runner starts runs as the deployment says, not with its own job variables"
    started = cli(runner, "deployment", "run", "greet/hosted")
    run_id = next(w for w in started.stdout.split() if len(w) == 36 and w.count("-") == 4)

    cli(runner, "worker", "start", "--pool", pool, "--type", "process", "--run-once")

    status, run = http(hosted, "GET", f"/flow_runs/{run_id}", viewer)
    assert status == 200 and run["state"]["type"] == "COMPLETED", run
    status, logs = http(hosted, "POST", "/logs/filter", viewer, {"logs": {"flow_run_id": {"any_": [run_id]}}})
    assert any("greeting world" in line["message"] for line in logs), logs
