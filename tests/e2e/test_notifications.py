"""Flow run notifications, as a Prefect user sets them up with the stock client: a
notification block (Slack webhook, custom webhook) saved from Python, a policy created
with the client, and flows whose state changes reach a real HTTP endpoint."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from uuid import uuid4

import pytest

WAIT = 30


class Receiver:
    """An HTTP endpoint on a free local port that records every request."""

    def __init__(self):
        self.hits = []
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                hits.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": self.rfile.read(length).decode()})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, predicate, what):
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            found = [h for h in list(self.hits) if predicate(h)]
            if found:
                return found
            time.sleep(0.2)
        raise AssertionError(f"no {what} within {WAIT}s; received: {self.hits}")


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


def test_state_changes_reach_slack_and_custom_webhooks_through_policies(stratus, run_flow, client, receiver):
    from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook
    from prefect.client.schemas.filters import FlowRunNotificationPolicyFilter
    from prefect.settings import PREFECT_API_URL, temporary_settings

    tag = f"notify-{uuid4().hex[:8]}"
    with temporary_settings({PREFECT_API_URL: stratus}):
        slack_id = SlackWebhook(url=f"{receiver.url}/slack/{tag}").save(f"{tag}-slack")
        custom_id = CustomWebhookNotificationBlock(
            name="ops",
            url=f"{receiver.url}/custom/{tag}",
            json_data={"subject": "{{subject}}", "message": "{{body}}", "token": "{{token}}"},
            secrets={"token": "s3cret"},
        ).save(f"{tag}-custom")

    # Slack hears of every state of the tagged runs; the custom webhook only of failures,
    # in its own words.
    client(lambda c: c.create_flow_run_notification_policy(
        block_document_id=slack_id, tags=[tag], state_names=[]))
    failure_policy = client(lambda c: c.create_flow_run_notification_policy(
        block_document_id=custom_id, tags=[tag], state_names=["Failed"],
        message_template="{flow_name}/{flow_run_name} failed: {flow_run_state_message}"))
    policies = client(lambda c: c.read_flow_run_notification_policies(
        FlowRunNotificationPolicyFilter(is_active={"eq_": True})))
    assert {failure_policy} <= {p.id for p in policies}

    out = run_flow(
        f"""
        import json
        from prefect import flow, tags

        @flow(name="{tag}-ok")
        def ok():
            return 1

        @flow(name="{tag}-bad")
        def bad():
            raise ValueError("boom")

        with tags("{tag}"):
            good = ok(return_state=True)
            failed = bad(return_state=True)
        print(json.dumps({{"ok": str(good.state_details.flow_run_id), "bad": str(failed.state_details.flow_run_id)}}))
        """
    )

    def slack_text(hit):
        if hit["path"] != f"/slack/{tag}":
            return ""
        [attachment] = json.loads(hit["body"])["attachments"]
        assert attachment["title"] == "Prefect flow run notification"
        return attachment["text"]

    completed = receiver.wait_for(lambda h: "entered state `Completed`" in slack_text(h), "Completed message on Slack")
    assert f"Flow run {tag}-ok/" in slack_text(completed[0])
    assert f"Flow run ID: {out['ok']}" in slack_text(completed[0])
    receiver.wait_for(lambda h: "entered state `Running`" in slack_text(h), "Running message on Slack")
    receiver.wait_for(lambda h: "entered state `Failed`" in slack_text(h), "Failed message on Slack")

    [failure] = receiver.wait_for(lambda h: h["path"] == f"/custom/{tag}", "message on the custom webhook")
    sent = json.loads(failure["body"])
    assert sent["subject"] == "Prefect flow run notification"
    assert sent["token"] == "s3cret"
    assert sent["message"].startswith(f"{tag}-bad/") and "failed: " in sent["message"], sent
    assert failure["headers"].get("user-agent") == "Prefect Notifications"

    # Paused policies are quiet; deleted ones are gone.
    client(lambda c: c.update_flow_run_notification_policy(failure_policy, is_active=False))
    run_flow(
        f"""
        from prefect import flow, tags

        @flow(name="{tag}-bad")
        def bad():
            raise ValueError("again")

        with tags("{tag}"):
            bad(return_state=True)
        print("{{}}")
        """
    )
    receiver.wait_for(lambda h: "again" in slack_text(h), "second failure on Slack")
    assert len([h for h in receiver.hits if h["path"] == f"/custom/{tag}"]) == 1, "the paused policy notified"
    client(lambda c: c.delete_flow_run_notification_policy(failure_policy))
    remaining = client(lambda c: c.read_flow_run_notification_policies(
        FlowRunNotificationPolicyFilter(is_active={"eq_": None})))
    assert failure_policy not in {p.id for p in remaining}
    assert any(p.block_document_id == slack_id for p in remaining)
