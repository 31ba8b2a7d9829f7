"""Two workspaces on one hosted Stratus, used at once with their own keys, as two teams
would: `stratus account create` and `stratus workspace create` by the operator; the stock
client, CLI and worker in one workspace (PREFECT_API_URL plain /api), the stock client and
the Stratus agent in the other (PREFECT_API_URL its workspace URL); the same flow, pool,
block and variable names in both; neither sees the other's flows, runs, logs, blocks or
variables, and neither key reaches the other's URL."""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace
from uuid import uuid4

from conftest import STRATUS_BIN

from test_hosted import api_key, hosted  # noqa: F401  (fixture)
from test_hosted import http as hosted_http
from test_hosted import pytestmark  # noqa: F401
from test_stratus_agent import stratus_env

PREFECT = str(Path(sys.executable).parent / "prefect")

FLOW = """
import json, sys
from prefect import flow, get_run_logger
from prefect.blocks.system import Secret
from prefect.variables import Variable

@flow(name="nightly")
def nightly():
    get_run_logger().info("team %s was here", sys.argv[1])
    return 1

Secret(value="secret-of-" + sys.argv[1]).save("creds", overwrite=True)
Variable.set("owner", sys.argv[1], overwrite=True)
state = nightly(return_state=True)
print(json.dumps({"type": state.type.value, "id": str(state.state_details.flow_run_id),
                  "secret": Secret.load("creds").get(), "owner": Variable.get("owner").value}))
"""

DEPLOYED = """
from prefect import flow, get_run_logger

@flow(name="deployed")
def deployed(team: str = "?"):
    get_run_logger().info("deployed run of %s", team)
"""


def operator(server, *args):
    out = subprocess.run(
        [STRATUS_BIN, *args],
        env=dict(os.environ, STRATUS_DATABASE_URL=server.database_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def env_for(api_url, key, tmp_path):
    env = dict(os.environ, PREFECT_API_URL=api_url, PREFECT_API_KEY=key,
               PREFECT_HOME=str(tmp_path / f"home-{uuid4().hex[:6]}"), COLUMNS="250")
    return env


def http(base, method, path, key, body=None):
    return hosted_http(SimpleNamespace(url=base), method, path, key, body)


def test_two_teams_work_at_once_and_see_only_their_own(hosted, tmp_path):  # noqa: F811
    operator(hosted, "account", "create", "--name", "team-b")
    created = operator(hosted, "workspace", "create", "--account", "team-b", "--name", "data")
    path = next(line.split("<server>")[1] for line in created.splitlines() if "PREFECT_API_URL=<server>" in line)
    a_url = hosted.url
    b_url = hosted.url[: -len("/api")] + path
    a_key, _ = api_key(hosted, "developer")
    b_out = operator(hosted, "api-key", "create", "--name", "team-b", "--role", "developer",
                     "--account", "team-b", "--workspace", "data")
    b_key = b_out.strip().splitlines()[-1]
    assert b_key.startswith("stratus_")

    # Both teams run the same-named flow, block and variable at the same time.
    script = tmp_path / "nightly.py"
    script.write_text(textwrap.dedent(FLOW))
    procs = {
        team: subprocess.Popen([sys.executable, str(script), team], env=env_for(url, key, tmp_path),
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for team, url, key in [("a", a_url, a_key), ("b", b_url, b_key)]
    }
    results = {}
    for team, proc in procs.items():
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, f"team {team}:\n{err[-3000:]}"
        results[team] = json.loads(out.strip().splitlines()[-1])
        assert results[team]["type"] == "COMPLETED"
        assert results[team]["secret"] == f"secret-of-{team}", "each team reads its own block"
        assert results[team]["owner"] == team, "and its own variable"

    # Deployments with the same names in both: team A's run by the stock worker, team B's
    # by the Stratus agent, both running at once.
    src = tmp_path / "src"
    src.mkdir()
    (src / "deployed.py").write_text(textwrap.dedent(DEPLOYED))
    for url, key in [(a_url, a_key), (b_url, b_key)]:
        made = subprocess.run([PREFECT, "work-pool", "create", "--type", "process", "shared-pool"],
                              env=env_for(url, key, tmp_path), capture_output=True, text=True, timeout=120)
        assert made.returncode == 0, made.stdout + made.stderr
    a_deploy = subprocess.run([PREFECT, "--no-prompt", "deploy", "deployed.py:deployed", "--name", "same", "--pool", "shared-pool"],
                              env=env_for(a_url, a_key, tmp_path), cwd=src, capture_output=True, text=True, timeout=120)
    assert a_deploy.returncode == 0, a_deploy.stdout + a_deploy.stderr
    b_deploy = subprocess.run([STRATUS_BIN, "deploy", str(src), "--entrypoint", "deployed.py:deployed", "--name", "same", "--pool", "shared-pool"],
                              env=dict(stratus_env(b_url, tmp_path, {}), PREFECT_API_KEY=b_key),
                              capture_output=True, text=True, timeout=120)
    assert b_deploy.returncode == 0, b_deploy.stdout + b_deploy.stderr
    runs = {}
    for team, url, key in [("a", a_url, a_key), ("b", b_url, b_key)]:
        started = subprocess.run([PREFECT, "deployment", "run", "deployed/same", "--param", f"team={team}"],
                                 env=env_for(url, key, tmp_path), capture_output=True, text=True, timeout=120)
        assert started.returncode == 0, started.stdout + started.stderr
        runs[team] = next(w for w in started.stdout.split() if len(w) == 36 and w.count("-") == 4)
    agent_log = open(tmp_path / "agent.log", "w")
    agent = subprocess.Popen([STRATUS_BIN, "agent", "start", "--pool", "shared-pool", "--work-dir", str(tmp_path / "agent")],
                             env=dict(stratus_env(b_url, tmp_path, {}), PREFECT_API_KEY=b_key),
                             stdout=agent_log, stderr=subprocess.STDOUT)
    try:
        worker = subprocess.run([PREFECT, "worker", "start", "--pool", "shared-pool", "--type", "process", "--run-once"],
                                env=env_for(a_url, a_key, tmp_path), cwd=src, capture_output=True, text=True, timeout=180)
        assert worker.returncode == 0, worker.stdout[-2000:] + worker.stderr[-2000:]
        deadline = time.time() + 120
        while time.time() < deadline:
            if http(b_url, "GET", f"/flow_runs/{runs['b']}", b_key)[1]["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED"):
                break
            time.sleep(1)
    finally:
        agent.terminate()
        agent.wait(timeout=30)
    for team, url, key in [("a", a_url, a_key), ("b", b_url, b_key)]:
        status, run = http(url, "GET", f"/flow_runs/{runs[team]}", key)
        assert status == 200 and run["state"]["type"] == "COMPLETED", (team, run, (tmp_path / "agent.log").read_text()[-3000:])

    # Each sees its own runs, logs, blocks and variables, and nothing of the other's.
    for team, url, key, other in [("a", a_url, a_key, "b"), ("b", b_url, b_key, "a")]:
        status, flow_runs = http(url, "POST", "/flow_runs/filter", key, {})
        ids = {r["id"] for r in flow_runs}
        assert {results[team]["id"], runs[team]} <= ids and not ids & {results[other]["id"], runs[other]}, (team, ids)
        status, logs = http(url, "POST", "/logs/filter", key, {"limit": 200})
        text = json.dumps(logs)
        assert f"team {team} was here" in text and f"team {other} was here" not in text
        assert f"deployed run of {other}" not in text
        status, docs = http(url, "POST", "/block_documents/filter", key, {"include_secrets": True})
        assert f"secret-of-{team}" in json.dumps(docs) and f"secret-of-{other}" not in json.dumps(docs)
        status, variables = http(url, "POST", "/variables/filter", key, {})
        assert [v["value"] for v in variables if v["name"] == "owner"] == [team]
        assert http(url, "GET", f"/flow_runs/{results[other]['id']}", key)[0] == 404
        listed = subprocess.run([PREFECT, "flow-run", "ls"], env=env_for(url, key, tmp_path),
                                capture_output=True, text=True, timeout=120)
        assert listed.returncode == 0 and results[team]["id"] in listed.stdout
        assert results[other]["id"] not in listed.stdout
    # A key does not reach the other workspace's URL at all.
    assert http(b_url, "POST", "/flows/filter", a_key, {})[0] == 404
    assert http(a_url, "POST", "/flows/filter", b_key, {})[0] == 404
    wrong = subprocess.run([sys.executable, str(script), "x"], env=env_for(b_url, a_key, tmp_path),
                           cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert wrong.returncode != 0 and "404" in wrong.stderr, wrong.stderr[-2000:]
