"""Property-based fuzzing of the API from its own contract: schemathesis (from PyPI, in its
own venv made by the test command) reads `/api/openapi.json` from a server of its own and
sends generated requests to every operation. No answer may be a 5xx, take longer than a
second, or stray from the document; the server's log must show no panic.

The seed and the number of examples per operation are printed; set STRATUS_FUZZ_SEED and
STRATUS_FUZZ_EXAMPLES to replay or widen a run."""

import os
import subprocess

import pytest
from conftest import Server

SCHEMATHESIS = os.environ.get("STRATUS_SCHEMATHESIS")
SEED = int(os.environ.get("STRATUS_FUZZ_SEED") or 20261205)
EXAMPLES = int(os.environ.get("STRATUS_FUZZ_EXAMPLES") or 20)
# Left out: the admin routes that empty or drop the database (they would leave nothing to
# fuzz), and the queue long poll, which waits up to 20 s by design.
EXCLUDED = r"^/admin/database|/message_queue/receive$"


@pytest.mark.stratus_only
def test_the_fuzzer_finds_no_server_error_slow_answer_or_contract_violation(tmp_path, capsys):
    if not SCHEMATHESIS or not os.access(SCHEMATHESIS, os.X_OK):
        message = "schemathesis is not installed (the test command installs it)"
        if os.environ.get("STRATUS_E2E_REQUIRE_FUZZER"):
            pytest.fail(message)
        pytest.skip(message)
    server = Server({"STRATUS_LOG": "warn"})
    server.start()
    try:
        proc = subprocess.run(
            [
                SCHEMATHESIS, "run", server.url + "/openapi.json", "--url", server.url,
                "--seed", str(SEED), "--max-examples", str(EXAMPLES),
                "--phases", "examples,coverage,fuzzing",
                "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                "--max-response-time", "1",
                "--exclude-path-regex", EXCLUDED,
                "--workers", "2", "--no-shrink",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
            env=dict(os.environ, SCHEMATHESIS_TELEMETRY="false"),
        )
        out = proc.stdout + proc.stderr
        summary = [line.strip() for line in out.splitlines() if "generated," in line or "Tested:" in line]
        with capsys.disabled():
            print(f"\nschemathesis, seed {SEED}, {EXAMPLES} examples per operation: {'; '.join(summary)}")
        # The failures section names each failing operation with its request; the warnings
        # after it are long.
        failures = out[out.find("FAILURES"):] if "FAILURES" in out else out
        assert proc.returncode == 0, failures[:8000] + "\n...\n" + out[-2500:]
        log = server.log.read_text(errors="replace")
        assert "panicked" not in log, log[-4000:]
    finally:
        server.stop()
