"""Process faults: the Stratus agent and the server killed with SIGKILL while runs are
claimed, running and finishing. Afterwards no run is left Pending or Running: a run whose
agent stopped heartbeating is marked Crashed after three of the agent's heartbeat
intervals, and no run executes twice."""

import asyncio
import os
import random
import time
from collections import Counter
from pathlib import Path
from datetime import datetime, timedelta, timezone
from uuid import uuid4

import pytest
from conftest import AWS_ENV, Server
from _support import flow_run_states
from test_stratus_agent import agents_for, client_for, create_runs, deploy, deployment_id_of, make_pool, wait_for  # noqa: F401

# The agents here heartbeat every second, so their lost runs are Crashed after about 3 s.
HEARTBEAT = ["--heartbeat-interval", "1"]
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@pytest.fixture
def own_server():
    """A server this test may kill: its own database, port and process."""
    server = Server(AWS_ENV)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def wait_for_pid(path, agents, timeout=60):
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, agents.logs()
        time.sleep(0.1)
    return int(path.read_text())


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.stratus_only
def test_a_run_whose_agent_was_killed_is_crashed_and_its_process_stopped(stratus_server, tmp_path, agents_for, capsys):
    api, client = stratus_server.url, client_for(stratus_server.url)
    pool = f"killed-agent-{uuid4().hex[:8]}"
    make_pool(api, tmp_path, pool)
    deploy(api, tmp_path, AWS_ENV, pool, "outlived")
    agents = agents_for(api, AWS_ENV)
    victim = agents.start(pool, *HEARTBEAT, name="steady-name")
    pid_file = tmp_path / "flow.pid"
    [run_id] = create_runs(
        client, deployment_id_of(client, "outlived"), 1, datetime.now(timezone.utc), sleep=600, pid_file=str(pid_file)
    )
    wait_for(client, [run_id], {"RUNNING"}, 60, agents)
    flow_pid = wait_for_pid(pid_file, agents)

    agents.crash(victim)
    killed = time.monotonic()
    # The flow's process dies with its agent rather than running on unsupervised.
    while alive(flow_pid):
        assert time.monotonic() - killed < 10, f"the flow's process {flow_pid} outlived its agent"
        time.sleep(0.1)
    # A new agent of the same name does not vouch for the runs of the one it replaced.
    agents.start(pool, *HEARTBEAT, name="steady-name")
    [run] = wait_for(client, [run_id], TERMINAL, 30, agents)
    detected = time.monotonic() - killed
    assert run.state.type.value == "CRASHED", run.state
    assert "stopped heartbeating" in run.state.message, run.state.message
    with capsys.disabled():
        print(f"\nagent killed mid-run: the run was Crashed {detected:.1f} s later (heartbeat 1 s, timeout 3 intervals)")
    assert detected < 15


@pytest.mark.stratus_only
def test_killing_the_server_and_agents_mid_burst_leaves_no_run_unfinished_or_run_twice(own_server, tmp_path, agents_for, capsys):
    seed = int(os.environ.get("STRATUS_FAULT_SEED") or random.randrange(1 << 32))
    rng = random.Random(seed)
    api, client = own_server.url, client_for(own_server.url)
    pool = f"faults-{uuid4().hex[:8]}"
    make_pool(api, tmp_path, pool)
    deploy(api, tmp_path, AWS_ENV, pool, "burst")
    deployment_id = deployment_id_of(client, "burst")
    agents = agents_for(api, AWS_ENV)
    procs = [agents.start(pool, *HEARTBEAT) for _ in range(2)]

    marks = tmp_path / "marks.txt"
    count = 16
    started = time.monotonic()
    due = datetime.now(timezone.utc) + timedelta(seconds=3)
    run_ids = create_runs(client, deployment_id, count, due, marks=str(marks), sleep=1.0)

    # Faults at random points of the burst: claims, flows starting, running and finishing.
    events = sorted([("server", rng.uniform(3.0, 8.0)), ("agent", rng.uniform(3.0, 8.0)), ("server", rng.uniform(9.0, 13.0))], key=lambda e: e[1])
    recoveries = []
    for what, at in events:
        time.sleep(max(0.0, at - (time.monotonic() - started)))
        if what == "server":
            own_server.kill()
            time.sleep(rng.uniform(0.2, 1.5))
            recoveries.append(own_server.restart())
        else:
            victim = procs.pop(rng.randrange(len(procs)))
            agents.crash(victim)
            procs.append(agents.start(pool, *HEARTBEAT))

    runs = wait_for(client, run_ids, TERMINAL, 150, agents)
    finished = time.monotonic() - started
    outcome = Counter(r.state.type.value for r in runs)
    executions = Counter(marks.read_text().split()) if marks.exists() else Counter()
    report = (
        f"seed {seed}: faults {[(w, round(t, 1)) for w, t in events]}; {count} runs: {dict(outcome)}; "
        f"{sum(executions.values())} executions; server healthy again after {[round(r, 2) for r in recoveries]} s; "
        f"all runs finished {finished:.1f} s after the burst"
    )
    crashes = Counter(r.state.message for r in runs if r.state.type.value == "CRASHED")
    with capsys.disabled():
        print(f"\nprocess faults: {report}; crashed because: {dict(crashes)}")
    twice = {k: v for k, v in executions.items() if v > 1}
    assert not twice, f"runs executed twice (seed {seed}): {twice}\n{agents.logs()}"
    for run in runs:
        kinds = [s.type.value for s in flow_run_states(client, run.id)]
        assert kinds.count("RUNNING") <= 1, (run.id, kinds)
        if run.state.type.value == "COMPLETED":
            assert executions[str(run.id)] == 1, (run.id, kinds)
        else:
            assert run.state.type.value == "CRASHED", (seed, run.id, run.state)
    # Runs crash only because an agent was lost (the killed ones; or, rarely, an answer to a
    # claim lost with the server, which leaves the claimant unaware of its run): the
    # server's restarts themselves cost none.
    killed = {Path(log.name).stem for _, log in agents.crashed}
    for message in crashes:
        assert "stopped heartbeating" in message, (seed, message, agents.logs())
    # Nothing of the burst is lost in the outbox either.
    unpublished = asyncio.run(own_server.sql("SELECT count(*) AS n FROM outbox WHERE published IS NULL"))
    assert unpublished[0]["n"] == 0
