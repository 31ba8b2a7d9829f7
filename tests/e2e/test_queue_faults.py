"""Queue and storage faults: SQS and S3 (LocalStack) unreachable while runs become due and
a flow is deployed. The outbox holds every message and delivers it when the queue returns,
`stratus deploy` and the agent say what is wrong and try again, and nothing is lost: every
run completes, once.

LocalStack is reached through a TCP proxy the test can cut: while cut, connections are
refused and open ones reset, as when LocalStack is stopped; the shared LocalStack keeps
serving the other tests."""

import asyncio
import socket
import subprocess
import threading
import time
import urllib.parse
from collections import Counter
from datetime import datetime, timezone
from uuid import uuid4

import pytest
from conftest import AWS_ENV, STRATUS_BIN, Server
from test_stratus_agent import (  # noqa: F401
    agents_for,
    client_for,
    create_runs,
    deploy,
    deployment_id_of,
    make_pool,
    stratus_env,
    wait_for,
)


class CuttableProxy:
    """A TCP proxy to host:port on a local port of its own, which `cut` takes away."""

    def __init__(self, host, port):
        self.target = (host, port)
        self.port = None
        self.listener = None
        self.conns = []
        self.lock = threading.Lock()
        self.restore()

    def restore(self):
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port or 0))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self):
        with self.lock:
            self.listener.close()
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()
            self.conns.clear()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture
def proxy():
    if not AWS_ENV:
        pytest.skip("LocalStack is not running (the test command starts it)")
    target = urllib.parse.urlparse(AWS_ENV["STRATUS_SQS_ENDPOINT"])
    p = CuttableProxy(target.hostname, target.port)
    yield p
    p.cut()


@pytest.mark.stratus_only
def test_sqs_and_s3_going_away_loses_nothing(proxy, tmp_path, agents_for, capsys):
    env = dict(AWS_ENV, STRATUS_SQS_ENDPOINT=proxy.url, STRATUS_S3_ENDPOINT=proxy.url)
    server = Server(env)
    server.start()
    try:
        api, client = server.url, client_for(server.url)
        pool = f"outage-{uuid4().hex[:8]}"
        make_pool(api, tmp_path, pool)
        deploy(api, tmp_path, env, pool, "before")
        agents = agents_for(api, env)
        agents.start(pool, "--poll-interval", "1")

        proxy.cut()
        cut_at = time.monotonic()
        # A deployment made during the outage waits for the store, saying so.
        src = tmp_path / "flowcode"
        deploying = subprocess.Popen(
            [STRATUS_BIN, "deploy", str(src), "--entrypoint", "work_flow.py:work", "--name", "during", "--pool", pool],
            env=stratus_env(api, tmp_path, env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        marks = tmp_path / "marks.txt"
        run_ids = create_runs(client, deployment_id_of(client, "before"), 6, datetime.now(timezone.utc), marks=str(marks))
        ids = [str(i) for i in run_ids]

        # Nothing reaches the queue, nothing is lost: every message waits in the outbox, and
        # no run fails for want of its code.
        time.sleep(6)
        held = asyncio.run(server.sql(
            "SELECT count(*) AS n FROM outbox WHERE flow_run_id = ANY($1::uuid[]) AND published IS NULL", ids))[0]["n"]
        assert held == len(ids), f"{held} of {len(ids)} messages held while SQS is away"
        states = [client(lambda c, i=i: c.read_flow_run(i)).state.type.value for i in run_ids]
        assert set(states) <= {"SCHEDULED", "PENDING"}, states
        assert deploying.poll() is None, deploying.communicate()[0]

        proxy.restore()
        restored_at = time.monotonic()
        out, _ = deploying.communicate(timeout=90)
        assert deploying.returncode == 0, out
        assert "trying again" in out, out

        deadline = time.monotonic() + 30
        while asyncio.run(server.sql(
                "SELECT 1 FROM outbox WHERE flow_run_id = ANY($1::uuid[]) AND published IS NULL", ids)):
            assert time.monotonic() < deadline, "the outbox did not deliver after SQS came back"
            time.sleep(0.2)
        delivered = time.monotonic() - restored_at

        runs = wait_for(client, run_ids, {"COMPLETED", "FAILED", "CRASHED"}, 120, agents)
        assert all(r.state.type.value == "COMPLETED" for r in runs), ([r.state for r in runs], agents.logs())
        executions = Counter(marks.read_text().split())
        assert sorted(executions) == sorted(ids) and set(executions.values()) == {1}, executions
        logs = agents.logs()
        assert "falling back to the HTTP poll" in logs and "cannot be fetched yet" in logs, logs

        # The deployment stored during the outage runs too.
        [late] = create_runs(client, deployment_id_of(client, "during"), 1, datetime.now(timezone.utc))
        [run] = wait_for(client, [late], {"COMPLETED", "FAILED", "CRASHED"}, 90, agents)
        assert run.state.type.value == "COMPLETED", (run.state, agents.logs())
        with capsys.disabled():
            print(
                f"\nqueue and storage faults: SQS and S3 away for {restored_at - cut_at:.1f} s; "
                f"{held} messages held in the outbox, all delivered {delivered:.1f} s after they came back; "
                f"{len(ids)} runs completed, each executed once; the deployment made meanwhile was stored"
            )
    finally:
        server.stop()
