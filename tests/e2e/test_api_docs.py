"""The API's contract as users and tools meet it: `/api/openapi.json` lists every path and
method Prefect 2.20 serves, and the Swagger UI and Redoc pages render it in a real
browser with nothing fetched from elsewhere."""

import json
import re
import time
import urllib.request

import pytest
from test_ui_browser import SHOTS, browser  # noqa: F401  (fixture)

# What Prefect 2.20 serves that Stratus does not, and why (nothing now).
NOT_SERVED: set = set()


def operations(doc):
    """(METHOD, path) pairs, paths without a trailing slash and with parameters unnamed:
    a path parameter's name is not part of what a client sends."""
    return {
        (method.upper(), re.sub(r"\{[^}]*\}", "{}", path.rstrip("/") or "/"))
        for path, item in doc["paths"].items()
        for method in item
    }


def test_every_path_and_method_prefect_serves_is_in_the_document(stratus):
    from prefect.server.api.server import create_api_app

    prefect = operations(create_api_app().openapi())
    with urllib.request.urlopen(stratus + "/openapi.json", timeout=10) as res:
        ours = json.load(res)
    assert ours["openapi"].startswith("3.1")
    missing = prefect - operations(ours) - NOT_SERVED
    assert not missing, f"Prefect 2.20 serves these, the document lacks them: {sorted(missing)}"
    print(f"{len(prefect)} Prefect 2.20 operations, {len(operations(ours))} in Stratus's document")


def resolved(doc, schema):
    while isinstance(schema, dict) and ("$ref" in schema or len(schema.get("allOf", [])) == 1):
        schema = doc["components"]["schemas"][schema["$ref"].split("/")[-1]] if "$ref" in schema else schema["allOf"][0]
    return schema if isinstance(schema, dict) else {}


def body_schemas(doc):
    found = {}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            content = (op.get("requestBody") or {}).get("content", {})
            if "application/json" in content:
                key = (method.upper(), re.sub(r"\{[^}]*\}", "{}", path.rstrip("/") or "/"))
                found[key] = resolved(doc, content["application/json"]["schema"])
    return found


def test_every_field_prefect_accepts_in_a_request_body_is_accepted(stratus):
    """Where Stratus refuses unknown fields, each field of Prefect's request body is known."""
    from prefect.server.api.server import create_api_app

    with urllib.request.urlopen(stratus + "/openapi.json", timeout=10) as res:
        ours = body_schemas(json.load(res))
    refused = []
    for key, theirs in body_schemas(create_api_app().openapi()).items():
        if key in NOT_SERVED or key[1].startswith(("/events", "/automations")):
            continue
        mine = ours.get(key)
        assert mine is not None, f"{key}: Prefect takes a JSON body, the document gives none"
        if mine.get("additionalProperties") is False:
            unknown = set(theirs.get("properties", {})) - set(mine.get("properties", {}))
            if unknown:
                refused.append((key, sorted(unknown)))
    assert not refused, f"fields Prefect accepts that Stratus would refuse: {refused}"


def wait_for(check, what, timeout=30):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.stratus_only
def test_swagger_ui_and_redoc_render_the_document_offline(browser, stratus_server):  # noqa: F811
    from selenium.webdriver.common.by import By

    base = stratus_server.url
    browser.get(base + "/docs")
    # Swagger UI renders the first sections at once and the rest as they scroll into view.
    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, ".opblock")) >= 5, "Swagger UI's operations")
    loaded = browser.execute_script("return window.ui.specSelectors.operations().size")
    assert loaded >= 150, f"Swagger UI loaded {loaded} operations"
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    browser.save_screenshot(str(SHOTS / "api-docs-swagger.png"))

    browser.get(base + "/redoc")
    wait_for(lambda: "Flow Runs" in browser.find_element(By.TAG_NAME, "body").text, "Redoc's sections")
    assert browser.find_elements(By.CSS_SELECTOR, "[data-section-id]"), "Redoc rendered no operation"
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    browser.save_screenshot(str(SHOTS / "api-docs-redoc.png"))
