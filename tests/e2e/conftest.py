"""End-to-end tests: the stock `prefect` 2.20 client and CLI against a running Stratus.

Run through `scripts/test`, or directly from the repository root:

    STRATUS_BIN=~/.cache/stratus/target/debug/stratus \
    STRATUS_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
    ~/.cache/stratus/prefect-venv/bin/python -m pytest tests/e2e

A session fixture creates a fresh database, starts `stratus server start` on a free port
and stops it afterwards. Each flow runs in its own Python process, as a user would run it,
with PREFECT_API_URL pointing at Stratus; the tests then read everything back through the
stock client's own methods.
"""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

# The pytest process uses the client too; keep its settings away from the user's.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="stratus-e2e-home-"))

import asyncpg  # noqa: E402  (installed with prefect)

ROOT = Path(__file__).resolve().parents[2]
STRATUS_BIN = os.environ.get(
    "STRATUS_BIN", str(Path.home() / ".cache/stratus/target/debug/stratus")
)
ADMIN_URL = os.environ.get(
    "STRATUS_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"
)


def _with_database(url: str, name: str) -> str:
    parts = urllib.parse.urlparse(url)
    return urllib.parse.urlunparse(parts._replace(path="/" + name))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def stratus():
    """The API URL of a Stratus server over a fresh database."""
    db = f"stratus_e2e_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{db}"'))
    port = _free_port()
    log = tempfile.NamedTemporaryFile(prefix="stratus-e2e-server-", suffix=".log", delete=False)
    env = dict(
        os.environ,
        STRATUS_DATABASE_URL=_with_database(ADMIN_URL, db),
        STRATUS_TASK_RUN_TAG_CONCURRENCY_SLOT_WAIT_SECONDS="1",
        STRATUS_LOG="warn",
    )
    proc = subprocess.Popen(
        [STRATUS_BIN, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.time() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as res:
                if json.load(res) is True:
                    break
        except Exception:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise RuntimeError("Stratus did not start:\n" + Path(log.name).read_text())
        time.sleep(0.2)
    try:
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))


@pytest.fixture
def run_flow(stratus, tmp_path):
    """Runs a flow script in its own process; returns the JSON its last line prints."""

    def run(source: str, expect_failure: bool = False):
        script = tmp_path / "flow_script.py"
        script.write_text(textwrap.dedent(source))
        env = dict(
            os.environ,
            PREFECT_API_URL=stratus,
            PREFECT_HOME=str(tmp_path / "prefect-home"),
            PREFECT_LOGGING_TO_API_BATCH_INTERVAL="0.3",
        )
        proc = subprocess.run(
            [sys.executable, str(script)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if proc.returncode != 0 and not expect_failure:
            raise AssertionError(f"flow script failed:\n{proc.stdout}\n{proc.stderr}")
        lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
        assert lines, f"no JSON line printed:\n{proc.stdout}\n{proc.stderr}"
        return json.loads(lines[-1])

    return run


@pytest.fixture
def client(stratus):
    """Runs a coroutine with a stock PrefectClient bound to Stratus."""
    from prefect.client.orchestration import PrefectClient

    def call(fn):
        async def go():
            async with PrefectClient(api=stratus) as c:
                return await fn(c)

        return asyncio.run(go())

    return call
