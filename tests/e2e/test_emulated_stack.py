"""The AWS deployment, emulated (`stratus emulate`, with STRATUS_E2E_STACK=emulated): each
route family is served by its own function, the gateway keeps Lambda's payload limit, and a
notification that cannot be sent is redelivered by SQS, parked in the dead-letter queue,
and sent once when redriven. The rest of the suite's emulated run (see scripts/test) shows
the stock client, worker and the Stratus agent working through these functions."""

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from uuid import uuid4

import pytest

from conftest import AWS_ENDPOINT, AWS_ENV, EMULATED

pytestmark = pytest.mark.skipif(not EMULATED, reason="needs the emulated AWS deployment (STRATUS_E2E_STACK=emulated)")

# What each function of infra/template.yaml serves: one request per route family.
FAMILIES = [
    ("GET", "/api/health", None, "RootFunction"),
    ("GET", "/api/version", None, "RootFunction"),
    ("GET", "/api/openapi.json", None, "RootFunction"),
    ("GET", "/api/docs", None, "RootFunction"),
    ("POST", "/api/flows/filter", {}, "FlowsFunction"),
    ("POST", "/api/flows/", {"name": f"emulated-{uuid4().hex[:6]}"}, "FlowsFunction"),
    ("POST", "/api/flow_runs/filter", {}, "FlowRunsFunction"),
    ("POST", "/api/flow_runs/count", {}, "FlowRunsFunction"),
    ("POST", "/api/task_runs/filter", {}, "TaskRunsFunction"),
    ("POST", "/api/logs/filter", {}, "LogsFunction"),
    ("POST", "/api/block_types/filter", {}, "BlocksFunction"),
    ("POST", "/api/block_documents/filter", {}, "BlocksFunction"),
    ("GET", "/api/block_capabilities/", None, "BlocksFunction"),
    ("POST", "/api/concurrency_limits/filter", {}, "ConcurrencyFunction"),
    ("POST", "/api/v2/concurrency_limits/filter", {}, "ConcurrencyFunction"),
    ("GET", "/api/admin/version", None, "AdminFunction"),
    ("POST", "/api/work_pools/filter", {}, "WorkPoolsFunction"),
    ("POST", "/api/work_queues/filter", {}, "WorkPoolsFunction"),
    ("POST", "/api/deployments/filter", {}, "DeploymentsFunction"),
    ("POST", "/api/variables/filter", {}, "VariablesFunction"),
    ("POST", "/api/artifacts/filter", {}, "ArtifactsFunction"),
    ("POST", "/api/flow_run_notification_policies/filter", {}, "NotificationPoliciesFunction"),
    ("POST", "/api/saved_searches/filter", {}, "UiFunction"),
    ("POST", "/api/ui/flow_runs/history", {"history_start": "2026-01-01T00:00:00Z", "history_end": "2026-01-02T00:00:00Z", "history_interval_seconds": 3600}, "UiFunction"),
    ("GET", "/", None, "UiFunction"),
    ("GET", "/flow-runs", None, "UiFunction"),
]


def call(base, method, path, body=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(base + path, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as res:
            return res.status, dict(res.headers), res.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_each_route_family_is_served_by_its_own_function(stratus_server):
    base = stratus_server.url.removesuffix("/api")
    for method, path, body, function in FAMILIES:
        status, headers, content = call(base, method, path, body)
        assert status < 400, (method, path, status, content[:300])
        assert headers.get("x-stratus-function") == function, (method, path, headers)
        assert headers.get("apigw-requestid"), "answers come through the HTTP API"
    # No route of the template takes it: API Gateway's own 404.
    status, headers, content = call(base, "POST", "/")
    assert (status, json.loads(content)) == (404, {"message": "Not Found"})
    assert "x-stratus-function" not in headers


def test_the_gateway_keeps_lambdas_payload_limit_and_log_batches_fit(stratus_server):
    base = stratus_server.url.removesuffix("/api")
    # The client sends logs in batches of up to 4 MB of JSON; quotes and newlines grow
    # when the body is escaped into the event, and still fit.
    logs = [
        {"name": "prefect.flow_runs", "level": 20, "message": 'a "quoted" line\n' * 47, "timestamp": "2026-12-05T08:00:00Z"}
        for _ in range(4_000)
    ]
    batch = json.dumps(logs).encode()
    assert 3_900_000 < len(batch) < 4_200_000
    status, headers, content = call(base, "POST", "/api/logs/", raw=batch)
    assert status == 201, content[:300]
    assert headers.get("x-stratus-function") == "LogsFunction"
    # Past Lambda's 6 MB: the gateway's clear 413, the function never sees it.
    status, headers, content = call(base, "POST", "/api/logs/", raw=b"[" + b'"' + b"y" * 6_400_000 + b'"]')
    assert (status, json.loads(content)) == (413, {"message": "Request Entity Too Large"})


def sqs(action, **params):
    """LocalStack's SQS query API, as the AWS CLI would call it."""
    data = urllib.parse.urlencode({"Action": action, "Version": "2012-11-05", **params}).encode()
    req = urllib.request.Request(AWS_ENDPOINT + "/", data=data, headers={"Accept": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as res:
        return json.load(res)[f"{action}Response"].get(f"{action}Result") or {}


def queue_url(name):
    return sqs("GetQueueUrl", QueueName=name)["QueueUrl"]


def receive(url, wait=0):
    got = sqs("ReceiveMessage", QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait).get("Message") or []
    return [got] if isinstance(got, dict) else got


def depth(url):
    attrs = sqs("GetQueueAttributes", QueueUrl=url, **{"AttributeName.1": "All"})["Attribute"]
    attrs = {a["Name"]: int(a["Value"]) for a in attrs if a["Name"].startswith("ApproximateNumberOfMessages")}
    return attrs["ApproximateNumberOfMessages"] + attrs["ApproximateNumberOfMessagesNotVisible"]


class Webhook:
    """Answers 500 until told otherwise; counts what it was sent."""

    def __init__(self):
        self.failing = True
        self.failed, self.delivered = [], []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
                (hook.failed if hook.failing else hook.delivered).append(body)
                self.send_response(500 if hook.failing else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def wait_until(predicate, what, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"not within {timeout}s: {what}")


def test_a_notification_that_cannot_be_sent_is_redelivered_parked_and_sent_once_when_redriven(
    stratus_server, run_flow, client
):
    import asyncio

    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.settings import PREFECT_API_URL, temporary_settings

    hook = Webhook()
    tag = f"dlq-{uuid4().hex[:8]}"
    with temporary_settings({PREFECT_API_URL: stratus_server.url}):
        block_id = CustomWebhookNotificationBlock(name="ops", url=hook.url, json_data={"text": "{{body}}"}).save(tag)
    client(lambda c: c.create_flow_run_notification_policy(block_document_id=block_id, tags=[tag], state_names=["Completed"]))
    out = run_flow(
        f"""
        import json
        from prefect import flow, tags

        @flow(name="{tag}")
        def ok():
            return 1

        with tags("{tag}"):
            state = ok(return_state=True)
        print(json.dumps({{"run": str(state.state_details.flow_run_id)}}))
        """
    )
    prefix = AWS_ENV["STRATUS_QUEUE_PREFIX"]
    source, dead = queue_url(f"{prefix}notifications"), queue_url(f"{prefix}notifications-dlq")

    # Every receive is one send; after the queue's 5 receives SQS parks the message.
    wait_until(lambda: depth(dead) == 1, "the message in the dead-letter queue")
    assert len(hook.failed) == 5, hook.failed
    assert all(out["run"] in body for body in hook.failed)
    [row] = asyncio.run(stratus_server.sql("SELECT attempts, last_error FROM flow_run_notification_queue"))
    assert row["attempts"] == 5 and "500" in row["last_error"], dict(row)
    time.sleep(5)
    assert len(hook.failed) == 5 and depth(source) == 0, "a parked notification is not sent again"

    # The receiver is fixed, and the dead-letter queue redriven (as StartMessageMoveTask
    # does): the notification is sent once, and is gone.
    hook.failing = False
    [parked] = receive(dead, wait=5)
    sqs("SendMessage", QueueUrl=source, MessageBody=parked["Body"])
    sqs("DeleteMessage", QueueUrl=dead, ReceiptHandle=parked["ReceiptHandle"])
    wait_until(lambda: len(hook.delivered) == 1, "the redriven notification")
    wait_until(lambda: depth(source) == 0, "the source queue drained", timeout=30)
    time.sleep(3)
    assert len(hook.delivered) == 1 and out["run"] in hook.delivered[0]
    assert asyncio.run(stratus_server.sql("SELECT 1 FROM flow_run_notification_queue")) == []
    assert depth(dead) == 0
    hook.server.shutdown()


def test_the_scheduler_function_marks_late_runs_within_seconds(stratus_server):
    """EventBridge invokes the scheduler once a minute; it ticks every second (the suite's
    STRATUS_SCHEDULER_INTERVAL_SECONDS) within each invocation, so a run already past its
    start is marked Late within seconds, not at the next minute."""
    from datetime import datetime, timedelta, timezone

    base = stratus_server.url.removesuffix("/api")
    _, _, flow = call(base, "POST", "/api/flows/", {"name": f"late-{uuid4().hex[:6]}"})
    past = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()
    status, _, run = call(base, "POST", "/api/flow_runs/", {
        "flow_id": json.loads(flow)["id"],
        "state": {"type": "SCHEDULED", "name": "Scheduled", "state_details": {"scheduled_time": past}},
    })
    assert status == 201, run
    run_id = json.loads(run)["id"]

    def state_name():
        return json.loads(call(base, "GET", f"/api/flow_runs/{run_id}")[2])["state"]["name"]

    wait_until(lambda: state_name() == "Late", "the run marked Late", timeout=20)
