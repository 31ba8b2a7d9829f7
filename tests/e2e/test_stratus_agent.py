"""The Stratus agent and `stratus deploy`: flow code packaged into S3 (LocalStack) or the
local storage folder, runs delivered through the work pool's queue (SQS, or the
Postgres-backed queue), claimed exactly once, run to Completed, and cancelled."""

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from uuid import uuid4

import pytest
from conftest import AWS_ENV, STRATUS_BIN
from _support import flow_run_states, uid

PREFECT = str(Path(sys.executable).with_name("prefect"))

FLOW = '''
import os, time
from prefect import flow, task, get_run_logger
import helper

@task
def add(a, b):
    return a + b

@flow
def work(marks: str = "", sleep: float = 0.0, pid_file: str = ""):
    from prefect.context import get_run_context
    run_id = str(get_run_context().flow_run.id)
    if marks:
        with open(marks, "a") as f:
            f.write(run_id + "\\n")
    if pid_file:
        with open(pid_file, "w") as f:
            f.write(str(os.getpid()))
    time.sleep(sleep)
    get_run_logger().info("helper says %s", helper.VALUE)
    return add(1, 2)
'''


def stratus_env(api_url, tmp_path, extra):
    return dict(
        os.environ,
        PREFECT_API_URL=api_url,
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        STRATUS_PYTHON=sys.executable,
        STRATUS_DATA_DIR=str(tmp_path / "stratus-data"),
        STRATUS_LOG="warn",
        PYTHONUNBUFFERED="1",
        **extra,
    )


class Agents:
    """`stratus agent start` processes, stopped with SIGTERM at the end of the test."""

    def __init__(self, api_url, tmp_path, extra_env):
        self.api_url, self.tmp_path, self.extra_env = api_url, tmp_path, extra_env
        self.procs = []
        self.crashed = []

    def start(self, pool, *args, name=None):
        n = len(self.procs) + len(self.crashed)
        log = open(self.tmp_path / f"agent-{n}.log", "w")
        proc = subprocess.Popen(
            [STRATUS_BIN, "agent", "start", "--pool", pool, "--name", name or f"agent-{n}",
             "--work-dir", str(self.tmp_path / f"agent-{n}"), "--shutdown-grace", "5", *args],
            env=stratus_env(self.api_url, self.tmp_path, self.extra_env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append((proc, log))
        return proc

    def crash(self, proc):
        """SIGKILL: the agent gets no chance to report anything."""
        entry = next(e for e in self.procs if e[0] is proc)
        proc.kill()
        proc.wait(timeout=10)
        self.procs.remove(entry)
        self.crashed.append(entry)

    def logs(self):
        return "\n".join(
            f"--- agent {Path(log.name).stem} ---\n" + Path(log.name).read_text(errors="replace")
            for _, log in self.procs + self.crashed
        )

    def stop(self):
        codes = []
        for proc, log in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                codes.append(proc.wait(timeout=30))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append("killed")
            log.close()
        for _, log in self.crashed:
            log.close()
        return codes


@pytest.fixture
def agents_for(tmp_path):
    made = []

    def make(api_url, extra_env):
        a = Agents(api_url, tmp_path, extra_env)
        made.append(a)
        return a

    yield make
    for a in made:
        codes = a.stop()
        assert all(c == 0 for c in codes), f"agents did not stop cleanly: {codes}\n{a.logs()}"


def deploy(api_url, tmp_path, extra_env, pool, name, *args):
    src = tmp_path / "flowcode"
    src.mkdir(exist_ok=True)
    (src / "work_flow.py").write_text(textwrap.dedent(FLOW))
    (src / "helper.py").write_text("VALUE = 'packaged-helper'\n")
    proc = subprocess.run(
        [STRATUS_BIN, "deploy", str(src), "--entrypoint", "work_flow.py:work", "--name", name, "--pool", pool, *args],
        env=stratus_env(api_url, tmp_path, extra_env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"stratus deploy failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def make_pool(api_url, tmp_path, pool):
    env = dict(os.environ, PREFECT_API_URL=api_url, PREFECT_HOME=str(tmp_path / "cli-home"))
    proc = subprocess.run([PREFECT, "work-pool", "create", "--type", "process", pool],
                          env=env, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def client_for(api_url):
    from prefect.client.orchestration import PrefectClient

    def call(fn):
        async def go():
            async with PrefectClient(api=api_url) as c:
                return await fn(c)

        return asyncio.run(go())

    return call


def create_runs(client, deployment_id, count, at, **parameters):
    from prefect.states import Scheduled

    async def go(c):
        return [
            (await c.create_flow_run_from_deployment(deployment_id, parameters=parameters, state=Scheduled(scheduled_time=at))).id
            for _ in range(count)
        ]

    return client(go)


def wait_for(client, run_ids, types, timeout, agents=None):
    deadline = time.monotonic() + timeout
    while True:
        runs = [client(lambda c, i=i: c.read_flow_run(i)) for i in run_ids]
        if all(r.state and r.state.type.value in types for r in runs):
            return runs
        if time.monotonic() > deadline:
            states = {str(r.id): r.state.name if r.state else None for r in runs}
            raise AssertionError(f"runs did not reach {types} in {timeout}s: {states}\n{agents.logs() if agents else ''}")
        time.sleep(0.5)


def deployment_id_of(client, name):
    return client(lambda c: c.read_deployment_by_name(f"work/{name}")).id


@pytest.mark.stratus_only
def test_the_agent_runs_code_from_storage_within_two_seconds_of_due(stratus_server, tmp_path, agents_for):
    api, client = stratus_server.url, client_for(stratus_server.url)
    pool = f"agent-pool-{uuid4().hex[:8]}"
    make_pool(api, tmp_path, pool)
    queue = client(lambda c: c._client.get(f"/work_pools/{pool}/message_queue")).json()
    if AWS_ENV:
        assert queue["backend"] == "sqs" and queue["queue_url"].endswith(AWS_ENV["STRATUS_QUEUE_PREFIX"] + str(client(lambda c: c.read_work_pool(pool)).id))
    out = deploy(api, tmp_path, AWS_ENV, pool, "from-storage")
    assert ("s3://" if AWS_ENV else "file://") in out, out
    deployment = client(lambda c: c.read_deployment_by_name("work/from-storage"))
    assert deployment.path.startswith("s3://" if AWS_ENV else "file://")

    agents = agents_for(api, AWS_ENV)
    agents.start(pool)
    # The agent heartbeats as a worker of the pool: the pool becomes READY.
    deadline = time.monotonic() + 20
    while client(lambda c: c.read_work_pool(pool)).status.value != "READY":
        assert time.monotonic() < deadline, agents.logs()
        time.sleep(0.3)

    due = datetime.now(timezone.utc) + timedelta(seconds=6)
    [run_id] = create_runs(client, deployment.id, 1, due)
    [run] = wait_for(client, [run_id], {"COMPLETED", "FAILED", "CRASHED"}, 90, agents)
    assert run.state.type.value == "COMPLETED", (run.state, agents.logs())
    states = flow_run_states(client, run_id)
    pending = next(s for s in states if s.type.value == "PENDING")
    lag = (pending.timestamp - due).total_seconds()
    assert -1.0 <= lag <= 2.0, f"claimed {lag:.2f}s after it was due\n{agents.logs()}"
    assert run.infrastructure_pid and ":" in run.infrastructure_pid
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    # Only this run's logs: other tests of the session write thousands.
    by_run = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))
    logs = client(lambda c: c.read_logs(log_filter=by_run))
    assert any("packaged-helper" in l.message for l in logs), "the packaged helper module ran"


@pytest.mark.stratus_only
@pytest.mark.parametrize("backend", ["sqs", "postgres"])
def test_several_agents_run_every_run_exactly_once_even_with_duplicate_messages(
    backend, request, tmp_path, agents_for
):
    if backend == "sqs" and not AWS_ENV:
        pytest.skip("LocalStack is not running (the test command starts it)")
    server = request.getfixturevalue("stratus_server" if backend == "sqs" else "stratus_pg_server")
    extra = AWS_ENV if backend == "sqs" else {}
    api, client = server.url, client_for(server.url)
    pool = f"burst-{backend}-{uuid4().hex[:8]}"
    make_pool(api, tmp_path, pool)
    deploy(api, tmp_path, extra, pool, f"burst-{backend}")
    deployment_id = deployment_id_of(client, f"burst-{backend}")
    agents = agents_for(api, extra)
    for _ in range(3):
        agents.start(pool)

    marks = tmp_path / "marks.txt"
    due = datetime.now(timezone.utc) + timedelta(seconds=8)
    run_ids = create_runs(client, deployment_id, 12, due, marks=str(marks))
    # Every message is published again, as after a publisher that died between sending and
    # recording it: the scheduler's sweep sends each one a second time, so every run is
    # delivered twice, both copies due at the same moment.
    ids = [str(i) for i in run_ids]
    rows = asyncio.run(server.sql("UPDATE outbox SET published = NULL WHERE flow_run_id = ANY($1::uuid[]) RETURNING id", ids))
    assert len(rows) == len(ids)
    deadline = time.monotonic() + 10
    while asyncio.run(server.sql("SELECT id FROM outbox WHERE flow_run_id = ANY($1::uuid[]) AND published IS NULL", ids)):
        assert time.monotonic() < deadline, "the sweep did not publish the messages again"
        time.sleep(0.2)
    sent_twice = asyncio.run(server.sql("SELECT count(*) AS n FROM outbox WHERE flow_run_id = ANY($1::uuid[]) AND attempts >= 2", ids))
    assert sent_twice[0]["n"] == len(ids)

    runs = wait_for(client, run_ids, {"COMPLETED", "FAILED", "CRASHED"}, 180, agents)
    assert all(r.state.type.value == "COMPLETED" for r in runs), [r.state for r in runs]
    executed = marks.read_text().split()
    assert sorted(executed) == sorted(ids), f"each run must execute exactly once: {executed}"
    for run_id in run_ids:
        kinds = [s.type.value for s in flow_run_states(client, run_id)]
        assert kinds.count("PENDING") == 1 and kinds.count("RUNNING") == 1, kinds
    claimed_by = {}
    for i, (_, log) in enumerate(agents.procs):
        for line in Path(log.name).read_text().splitlines():
            if line.startswith("Claimed flow run "):
                claimed_by.setdefault(line.split()[-1].rstrip("."), []).append(i)
    assert all(len(v) == 1 for v in claimed_by.values()) and len(claimed_by) == len(ids), claimed_by


@pytest.mark.stratus_only
def test_cancelling_a_running_run_kills_its_process(stratus_server, tmp_path, agents_for):
    api, client = stratus_server.url, client_for(stratus_server.url)
    pool = f"cancel-{uuid4().hex[:8]}"
    make_pool(api, tmp_path, pool)
    deploy(api, tmp_path, AWS_ENV, pool, "to-cancel")
    agents = agents_for(api, AWS_ENV)
    agents.start(pool)
    pid_file = tmp_path / "flow.pid"
    [run_id] = create_runs(
        client, deployment_id_of(client, "to-cancel"), 1, datetime.now(timezone.utc), sleep=600, pid_file=str(pid_file)
    )
    wait_for(client, [run_id], {"RUNNING"}, 60, agents)
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, agents.logs()
        time.sleep(0.2)
    pid = int(pid_file.read_text())
    os.kill(pid, 0)  # alive

    env = dict(os.environ, PREFECT_API_URL=api, PREFECT_HOME=str(tmp_path / "cli-home"))
    proc = subprocess.run([PREFECT, "flow-run", "cancel", str(run_id)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    [run] = wait_for(client, [run_id], {"CANCELLED"}, 45, agents)
    assert run.state.name == "Cancelled"
    deadline = time.monotonic() + 15
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, f"the flow's process {pid} is still alive"
        time.sleep(0.2)


@pytest.mark.stratus_only
def test_the_agent_falls_back_to_the_http_poll_when_its_queue_is_unreachable(stratus_server, tmp_path, agents_for):
    if not AWS_ENV:
        pytest.skip("LocalStack is not running (the test command starts it)")
    api, client = stratus_server.url, client_for(stratus_server.url)
    pool = f"fallback-{uuid4().hex[:8]}"
    make_pool(api, tmp_path, pool)
    deploy(api, tmp_path, AWS_ENV, pool, "fallback")
    # This agent's SQS endpoint is a port nothing listens on: every receive fails.
    agents = agents_for(api, dict(AWS_ENV, STRATUS_SQS_ENDPOINT="http://127.0.0.1:9"))
    agents.start(pool, "--poll-interval", "1")
    [run_id] = create_runs(client, deployment_id_of(client, "fallback"), 1, datetime.now(timezone.utc))
    [run] = wait_for(client, [run_id], {"COMPLETED", "FAILED", "CRASHED"}, 90, agents)
    assert run.state.type.value == "COMPLETED", (run.state, agents.logs())
    assert "falling back to the HTTP poll" in agents.logs()


@pytest.mark.stratus_only
def test_agents_wait_while_the_pool_is_paused_and_keep_to_its_concurrency_limit(stratus_server, tmp_path, agents_for):
    api, client = stratus_server.url, client_for(stratus_server.url)
    pool = f"limited-{uuid4().hex[:8]}"
    make_pool(api, tmp_path, pool)
    env = dict(os.environ, PREFECT_API_URL=api, PREFECT_HOME=str(tmp_path / "cli-home"))
    for command in (["set-concurrency-limit", pool, "1"], ["pause", pool]):
        proc = subprocess.run([PREFECT, "work-pool", *command], env=env, capture_output=True, text=True, timeout=90)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    deploy(api, tmp_path, AWS_ENV, pool, "limited")
    agents = agents_for(api, AWS_ENV)
    agents.start(pool)
    agents.start(pool)

    run_ids = create_runs(client, deployment_id_of(client, "limited"), 3, datetime.now(timezone.utc), sleep=1.0)
    # Paused: the runs wait, whoever gets their messages.
    time.sleep(8)
    waiting = [client(lambda c, i=i: c.read_flow_run(i)).state.type.value for i in run_ids]
    assert waiting == ["SCHEDULED"] * 3, f"{waiting}\n{agents.logs()}"

    proc = subprocess.run([PREFECT, "work-pool", "resume", pool], env=env, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = wait_for(client, run_ids, {"COMPLETED", "FAILED", "CRASHED"}, 180, agents)
    assert all(r.state.type.value == "COMPLETED" for r in runs), [r.state for r in runs]
    # One at a time: each run was claimed (Pending) only after the one before had ended.
    spans = []
    for run in runs:
        pending = next(s for s in flow_run_states(client, run.id) if s.type.value == "PENDING")
        spans.append((pending.timestamp, run.end_time))
    spans.sort()
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end, f"runs overlapped in a pool limited to 1: {spans}\n{agents.logs()}"


RETRYING_FLOW = '''
import os
from prefect import flow

@flow(retries=1, retry_delay_seconds=3)
def retrying(marks: str):
    with open(marks, "a") as f:
        f.write(f"{os.getpid()}\\n")
    with open(marks) as f:
        if len(f.read().split()) == 1:
            raise ValueError("the first attempt fails")
    return "ok"
'''


@pytest.mark.stratus_only
def test_a_flow_retrying_in_its_own_process_is_not_claimed_again(stratus_server, tmp_path, agents_for):
    api, client = stratus_server.url, client_for(stratus_server.url)
    pool = f"retrying-{uuid4().hex[:8]}"
    make_pool(api, tmp_path, pool)
    src = tmp_path / "retrying"
    src.mkdir()
    (src / "retrying_flow.py").write_text(textwrap.dedent(RETRYING_FLOW))
    proc = subprocess.run(
        [STRATUS_BIN, "deploy", str(src), "--entrypoint", "retrying_flow.py:retrying", "--name", "retrying", "--pool", pool],
        env=stratus_env(api, tmp_path, AWS_ENV), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    agents = agents_for(api, AWS_ENV)
    agents.start(pool)
    agents.start(pool)

    marks = tmp_path / "attempts.txt"
    deployment_id = client(lambda c: c.read_deployment_by_name("retrying/retrying")).id
    [run_id] = create_runs(client, deployment_id, 1, datetime.now(timezone.utc), marks=str(marks))
    [run] = wait_for(client, [run_id], {"COMPLETED", "FAILED", "CRASHED"}, 120, agents)
    assert run.state.type.value == "COMPLETED", (run.state, agents.logs())
    assert run.run_count == 2
    pids = marks.read_text().split()
    assert len(pids) == 2 and pids[0] == pids[1], f"both attempts must run in the one process: {pids}\n{agents.logs()}"
    kinds = [s.name for s in flow_run_states(client, run_id)]
    assert kinds.count("Pending") == 1 and "AwaitingRetry" in kinds, kinds
    # Its AwaitingRetry went to no queue: only the first run message was ever written.
    messages = asyncio.run(stratus_server.sql("SELECT count(*) AS n FROM outbox WHERE flow_run_id = $1", run_id))
    assert messages[0]["n"] == 1, messages


@pytest.mark.stratus_only
def test_an_agent_serving_some_queues_leaves_the_others_to_other_agents(stratus_server, tmp_path, agents_for):
    api, client = stratus_server.url, client_for(stratus_server.url)
    pool = f"queues-{uuid4().hex[:8]}"
    make_pool(api, tmp_path, pool)
    env = dict(os.environ, PREFECT_API_URL=api, PREFECT_HOME=str(tmp_path / "cli-home"))
    proc = subprocess.run([PREFECT, "work-queue", "create", "gpu", "--pool", pool],
                          env=env, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    deploy(api, tmp_path, AWS_ENV, pool, "on-cpu")
    deploy(api, tmp_path, AWS_ENV, pool, "on-gpu", "--queue", "gpu")
    agents = agents_for(api, AWS_ENV)
    agents.start(pool, "--queue", "gpu")

    now = datetime.now(timezone.utc)
    [cpu] = create_runs(client, deployment_id_of(client, "on-cpu"), 1, now)
    [gpu] = create_runs(client, deployment_id_of(client, "on-gpu"), 1, now)
    [done] = wait_for(client, [gpu], {"COMPLETED", "FAILED", "CRASHED"}, 90, agents)
    assert done.state.type.value == "COMPLETED", (done.state, agents.logs())
    time.sleep(3)
    assert client(lambda c: c.read_flow_run(cpu)).state.type.value == "SCHEDULED", agents.logs()

    # An agent for the whole pool takes the rest.
    agents.start(pool)
    [done] = wait_for(client, [cpu], {"COMPLETED", "FAILED", "CRASHED"}, 90, agents)
    assert done.state.type.value == "COMPLETED", (done.state, agents.logs())
    claims = [line for line in Path(agents.procs[0][1].name).read_text().splitlines() if line.startswith("Claimed")]
    assert claims == [f"Claimed flow run {gpu}."], claims
