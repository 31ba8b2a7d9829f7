"""Deployments and work pools with the stock CLI: runs started from a deployment are
picked up and executed by the stock `prefect worker` and `prefect agent`."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from uuid import uuid4

from _support import uid

PREFECT = str(Path(sys.executable).with_name("prefect"))

FLOW_SOURCE = """
from prefect import flow, get_run_logger

@flow
def greet(name: str = "world"):
    get_run_logger().info("greeting %s", name)
    return f"hello {name}"
"""


def cli(stratus, tmp_path, *args, timeout=90):
    # A wide terminal, so the CLI's tables do not truncate names.
    env = dict(os.environ, PREFECT_API_URL=stratus, PREFECT_HOME=str(tmp_path / "cli-home"), COLUMNS="250")
    proc = subprocess.run([PREFECT, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"prefect {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def deploy(run_flow, tmp_path, name, **target):
    (tmp_path / "greet_flow.py").write_text(textwrap.dedent(FLOW_SOURCE))
    keywords = ", ".join(f"{k}={v!r}" for k, v in target.items())
    return run_flow(
        f"""
        import json
        from prefect.deployments import Deployment
        from greet_flow import greet

        deployment = Deployment.build_from_flow(flow=greet, name={name!r}, parameters={{"name": "stratus"}}, {keywords})
        print(json.dumps({{"deployment_id": str(deployment.apply())}}))
        """
    )["deployment_id"]


def start_run(client, deployment_id):
    return client(lambda c: c.create_flow_run_from_deployment(uid(deployment_id))).id


def test_a_process_worker_runs_an_ad_hoc_deployment_run(stratus, tmp_path, run_flow, client):
    pool = f"pool-{uuid4().hex[:8]}"
    cli(stratus, tmp_path, "work-pool", "create", "--type", "process", pool)
    assert pool in cli(stratus, tmp_path, "work-pool", "ls")
    deployment_id = deploy(run_flow, tmp_path, "via-worker", work_pool_name=pool)
    assert "greet/via-worker" in cli(stratus, tmp_path, "deployment", "ls")
    run_id = start_run(client, deployment_id)

    cli(stratus, tmp_path, "worker", "start", "--pool", pool, "--type", "process", "--run-once", timeout=120)

    run = client(lambda c: c.read_flow_run(run_id))
    assert run.state.type.value == "COMPLETED", run.state
    assert run.work_pool_name == pool
    assert client(lambda c: c.read_work_pool(pool)).status.value == "READY"
    # Narrowed: the listing is by expected start time, and a shared server (the emulated
    # suite) holds scheduled runs in the future that would fill the default 15 rows.
    listing = cli(stratus, tmp_path, "flow-run", "ls", "--flow-name", "greet", "--state-type", "COMPLETED")
    assert str(run_id)[:8] in listing


def test_an_agent_runs_a_legacy_queue_deployment_run(stratus, tmp_path, run_flow, client):
    queue = f"queue-{uuid4().hex[:8]}"
    deployment_id = deploy(run_flow, tmp_path, "via-agent", work_queue_name=queue)
    run_id = start_run(client, deployment_id)

    cli(stratus, tmp_path, "agent", "start", "--work-queue", queue, "--run-once", timeout=120)

    run = client(lambda c: c.read_flow_run(run_id))
    assert run.state.type.value == "COMPLETED", run.state
    assert (run.work_queue_name, run.work_pool_name) == (queue, "default-agent-pool")


def test_prefect_deploy_and_a_process_worker_run_an_ad_hoc_run(stratus, tmp_path, client):
    pool = f"deploy-pool-{uuid4().hex[:8]}"
    cli(stratus, tmp_path, "work-pool", "create", "--type", "process", pool)
    (tmp_path / "greet_flow.py").write_text(textwrap.dedent(FLOW_SOURCE))
    cli(stratus, tmp_path, "--no-prompt", "deploy", "greet_flow.py:greet", "--name", "projects", "--pool", pool)
    deployment = client(lambda c: c.read_deployment_by_name("greet/projects"))
    assert deployment.work_pool_name == pool and deployment.pull_steps
    run_id = start_run(client, deployment.id)

    cli(stratus, tmp_path, "worker", "start", "--pool", pool, "--type", "process", "--run-once", timeout=120)

    run = client(lambda c: c.read_flow_run(run_id))
    assert run.state.type.value == "COMPLETED", run.state
    assert "greet/projects" in cli(stratus, tmp_path, "deployment", "ls")


def test_an_agent_runs_a_run_of_its_pool(stratus, tmp_path, run_flow, client):
    pool = f"agent-pool-{uuid4().hex[:8]}"
    cli(stratus, tmp_path, "work-pool", "create", "--type", "prefect-agent", pool)
    deployment_id = deploy(run_flow, tmp_path, "via-agent-pool", work_pool_name=pool)
    run_id = start_run(client, deployment_id)

    cli(stratus, tmp_path, "agent", "start", "--pool", pool, "--run-once", timeout=120)

    run = client(lambda c: c.read_flow_run(run_id))
    assert run.state.type.value == "COMPLETED", run.state
    assert (run.work_pool_name, run.work_queue_name) == (pool, "default")
