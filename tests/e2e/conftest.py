"""End-to-end tests: the stock `prefect` 2.20 client against a running Stratus server.

Run through `scripts/test`, or directly from the repository root:

    STRATUS_BIN=~/.cache/stratus/target/debug/stratus \
    STRATUS_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
    ~/.cache/stratus/prefect-venv/bin/python -m pytest tests/e2e

Both variables default to the values above. A session fixture creates a fresh database
`stratus_e2e_<hex>` on that Postgres, starts `$STRATUS_BIN server start` on a free port
over it, waits for `GET /api/health`, and on teardown stops the server (SIGTERM, then
SIGKILL) and drops the database. The server's output goes to a temporary file whose tail
is attached to every failing test's report.

Each flow runs in its own Python process, as a user would run `python flow.py`, with
PREFECT_API_URL pointing at Stratus and a private PREFECT_HOME; the script prints a JSON
line that the test reads. The tests then read everything back through the stock client's
own methods (`PrefectClient.read_*`).

To check the suite itself against a real Prefect 2.20 server, point it at one with
`STRATUS_E2E_API_URL=http://127.0.0.1:4200/api` (started with
PREFECT_TASK_RUN_TAG_CONCURRENCY_SLOT_WAIT_SECONDS=1); no database or Stratus process is
then created. Set STRATUS_E2E_KEEP_LOG=1 to keep the server's log file. Tests marked `stratus_only` check where Stratus deliberately differs from
Prefect 2.20 (deliberate differences) and are skipped in that mode.
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
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="stratus-e2e-home-")
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("PREFECT_PROFILE", None)

import asyncpg  # noqa: E402  (a dependency of prefect 2)

STRATUS_BIN = os.environ.get("STRATUS_BIN") or str(Path.home() / ".cache/stratus/target/debug/stratus")
ADMIN_URL = os.environ.get("STRATUS_TEST_DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"
EXTERNAL_API_URL = os.environ.get("STRATUS_E2E_API_URL")
STARTUP_TIMEOUT = 60.0
FLOW_SCRIPT_TIMEOUT = 120.0

_server_logs: "list[Path]" = []


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "stratus_only: checks a Stratus-specific behaviour (skipped against a real Prefect server)"
    )
    # Noise from prefect 2.20's own imports under pydantic 2.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning")
    config.addinivalue_line("filterwarnings", "ignore::PendingDeprecationWarning")


def pytest_collection_modifyitems(config, items):
    if EXTERNAL_API_URL:
        skip = pytest.mark.skip(reason="Stratus-specific behaviour; STRATUS_E2E_API_URL is set")
        for item in items:
            if "stratus_only" in item.keywords:
                item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for log in _server_logs:
            if log.exists():
                lines = log.read_text(errors="replace").splitlines()
                report.sections.append((f"stratus server log {log.name} (last 80 lines)", "\n".join(lines[-80:])))


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


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as res:
            return json.load(res) is True
    except Exception:
        return False


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


# LocalStack, when the test command started it: the server then uses SQS and S3.
AWS_ENDPOINT = os.environ.get("STRATUS_TEST_AWS_ENDPOINT")
if os.environ.get("STRATUS_E2E_REQUIRE_LOCALSTACK") and not AWS_ENDPOINT:
    raise RuntimeError("STRATUS_E2E_REQUIRE_LOCALSTACK is set but STRATUS_TEST_AWS_ENDPOINT is not")
SESSION = uuid.uuid4().hex[:8]
# STRATUS_E2E_STACK=emulated: the session's server is `stratus emulate`, the AWS deployment
# of infra/template.yaml run here (every function a Lambda under cargo-lambda's emulator,
# behind the template's HTTP API routes), instead of `stratus server start`.
EMULATED = os.environ.get("STRATUS_E2E_STACK") == "emulated"
ROOT = Path(__file__).resolve().parents[2]
if EMULATED and not AWS_ENDPOINT:
    raise RuntimeError("STRATUS_E2E_STACK=emulated needs LocalStack: set STRATUS_TEST_AWS_ENDPOINT")
# What every Stratus process of this session (server, agents, `stratus deploy`) shares.
AWS_ENV = (
    {
        "STRATUS_SQS_ENDPOINT": AWS_ENDPOINT,
        "STRATUS_S3_ENDPOINT": AWS_ENDPOINT,
        "STRATUS_S3_BUCKET": os.environ.get("STRATUS_TEST_S3_BUCKET", "stratus-flow-code"),
        "STRATUS_QUEUE_PREFIX": f"e2e-{SESSION}-",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
    }
    if AWS_ENDPOINT
    else {}
)


class Server:
    """A `stratus server start` over a fresh database."""

    def __init__(self, extra_env: dict, parameters=()):
        self.parameters = list(parameters)
        self.db = f"stratus_e2e_{uuid.uuid4().hex[:12]}"
        self.database_url = _with_database(ADMIN_URL, self.db)
        self.extra_env = extra_env
        self.proc = None
        self.log = None
        self.url = None
        self.port = None

    def start(self) -> str:
        asyncio.run(_admin(f'CREATE DATABASE "{self.db}"'))
        self.port = _free_port()
        log = tempfile.NamedTemporaryFile(prefix="stratus-e2e-server-", suffix=".log", delete=False)
        self.log = Path(log.name)
        _server_logs.append(self.log)
        return self._launch()

    def _launch(self) -> str:
        env = dict(
            os.environ,
            STRATUS_DATABASE_URL=self.database_url,
            # Prefect's server waits 30 s before a task retries a full tag-concurrency slot.
            STRATUS_TASK_RUN_TAG_CONCURRENCY_SLOT_WAIT_SECONDS="1",
            STRATUS_SCHEDULER_INTERVAL_SECONDS="1",
            **self.extra_env,
        )
        env.setdefault("STRATUS_LOG", "warn")
        command = [STRATUS_BIN, "server", "start", "--host", "127.0.0.1", "--port", str(self.port)]
        if EMULATED:
            # The template asks for API keys (STRATUS_AUTH=required); this suite checks the
            # serverless shape with the stock client as it is used locally, without a key.
            # Keys against a server that requires them: test_hosted.py.
            env.setdefault("STRATUS_AUTH", "open")
            command = [STRATUS_BIN, "emulate", "--host", "127.0.0.1", "--port", str(self.port)]
            command += ["--template", str(ROOT / "infra/template.yaml")]
            if os.environ.get("STRATUS_E2E_FUNCTIONS_DIR"):
                command += ["--functions-dir", os.environ["STRATUS_E2E_FUNCTIONS_DIR"]]
            for parameter in self.parameters:
                command += ["--parameter", parameter]
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{self.port}/api"
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not _healthy(url):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                why = f"exited with {self.proc.returncode}" if self.proc.poll() is not None else "timed out"
                raise RuntimeError(
                    f"Stratus did not become healthy at {url}/health ({why}). Server output:\n"
                    + self.log.read_text(errors="replace")
                )
            time.sleep(0.05)
        self.url = url
        return url

    def kill(self) -> None:
        """SIGKILL, as a crash or an out-of-memory kill would end it."""
        self.proc.kill()
        self.proc.wait(timeout=10)

    def restart(self) -> float:
        """Starts the server again on the same port and database; returns the seconds it
        took to become healthy."""
        started = time.monotonic()
        self._launch()
        return time.monotonic() - started

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)'))
        if self.log is not None and not os.environ.get("STRATUS_E2E_KEEP_LOG"):
            self.log.unlink(missing_ok=True)

    async def sql(self, query: str, *args):
        """Runs SQL on the server's database (to arrange faults, or read what the API hides)."""
        conn = await asyncpg.connect(self.database_url)
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()


def _server(extra_env: dict, parameters=()):
    if not os.access(STRATUS_BIN, os.X_OK):
        pytest.exit(f"STRATUS_BIN={STRATUS_BIN} is not an executable; build with `cargo build` first", 2)
    server = Server(extra_env, parameters)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def stratus_server():
    """The session's Stratus server: with SQS and S3 (LocalStack) when available."""
    if EXTERNAL_API_URL:
        pytest.skip("needs a Stratus server of its own")
    # Emulated, a failed notification comes back after 2 s rather than the template's 30.
    yield from _server(AWS_ENV, ["NotificationRetrySeconds=2"] if EMULATED else [])


@pytest.fixture(scope="session")
def stratus_pg_server():
    """A second server whose work pool queues are served from Postgres (no SQS, no S3)."""
    if EXTERNAL_API_URL:
        pytest.skip("needs a Stratus server of its own")
    if EMULATED:
        pytest.skip("the emulated AWS deployment has SQS and S3")
    yield from _server({})


@pytest.fixture(scope="session")
def stratus(request):
    """The API URL (`http://127.0.0.1:<port>/api`) of a Stratus server over a fresh database."""
    if EXTERNAL_API_URL:
        assert _healthy(EXTERNAL_API_URL), f"nothing healthy at {EXTERNAL_API_URL}"
        return EXTERNAL_API_URL.rstrip("/")
    return request.getfixturevalue("stratus_server").url


class FlowScripts:
    """Writes flow scripts into the test's tmp dir and runs them with Python."""

    def __init__(self, api_url: str, tmp_path: Path):
        self.api_url = api_url
        self.tmp_path = tmp_path
        self.count = 0

    def _prepare(self, source: str):
        self.count += 1
        script = self.tmp_path / f"flow_script_{self.count}.py"
        script.write_text(textwrap.dedent(source))
        env = dict(
            os.environ,
            PREFECT_API_URL=self.api_url,
            # A fresh home per process: persisted results can only be found through the API.
            PREFECT_HOME=str(self.tmp_path / f"prefect-home-{self.count}"),
            PREFECT_LOGGING_TO_API_BATCH_INTERVAL="0.3",
            PREFECT_LOGGING_LEVEL="INFO",
            PYTHONUNBUFFERED="1",
        )
        return script, env

    def run(self, source: str) -> dict:
        """Runs the script to the end; returns the JSON object on its last `{` line."""
        script, env = self._prepare(source)
        proc = subprocess.run(
            [sys.executable, str(script)],
            env=env,
            cwd=self.tmp_path,
            capture_output=True,
            text=True,
            timeout=FLOW_SCRIPT_TIMEOUT,
        )
        return self._output(proc.returncode, proc.stdout, proc.stderr)

    def start(self, source: str) -> subprocess.Popen:
        """Starts the script in the background; finish it with `wait`."""
        script, env = self._prepare(source)
        return subprocess.Popen(
            [sys.executable, str(script)],
            env=env,
            cwd=self.tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait(self, proc: subprocess.Popen, timeout: float = FLOW_SCRIPT_TIMEOUT) -> dict:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            raise AssertionError(f"flow script timed out:\n{stdout}\n{stderr}")
        return self._output(proc.returncode, stdout, stderr)

    @staticmethod
    def _output(returncode, stdout, stderr) -> dict:
        if returncode != 0:
            raise AssertionError(f"flow script exited with {returncode}:\n{stdout}\n{stderr}")
        lines = [line for line in stdout.splitlines() if line.startswith("{")]
        assert lines, f"flow script printed no JSON line:\n{stdout}\n{stderr}"
        return json.loads(lines[-1])


@pytest.fixture
def scripts(stratus, tmp_path) -> FlowScripts:
    return FlowScripts(stratus, tmp_path)


@pytest.fixture
def run_flow(scripts):
    """Runs a flow script in its own process; returns the JSON its last `{` line prints."""
    return scripts.run


@pytest.fixture
def client(stratus):
    """`client(lambda c: c.read_flow_run(id))`: runs a coroutine with a stock PrefectClient."""
    from prefect.client.orchestration import PrefectClient

    def call(fn):
        async def go():
            async with PrefectClient(api=stratus) as c:
                return await fn(c)

        return asyncio.run(go())

    return call
