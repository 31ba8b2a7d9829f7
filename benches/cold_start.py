"""Cold start and footprint of every function of infra/template.yaml, under the Lambda
emulator `stratus emulate` uses (cargo-lambda's Runtime and Invoke APIs).

For each function, several times: a fresh emulator and a fresh process of the function's
binary; the time from starting the process to its first answer (init and first request),
then warm invocations. Each HTTP function gets a payload format 2.0 event for a cheap route
of its family, the scheduler EventBridge's scheduled event, the notifier an SQS batch, the
migration function CloudFormation's Create request (it runs first, and migrates the
database). Prints one table: first answer (median), warm answer (median), peak RSS
(VmHWM, the largest of the runs), binary size.

    python benches/cold_start.py --database-url postgres://postgres@127.0.0.1:5432/bench \\
        [--functions-dir ~/.cache/stratus/target/lambda] [--cargo-lambda PATH] [--runs 5]

Build the binaries first as Lambda gets them: `infra/build` (then
`--functions-dir infra/.aws-sam/build`), or `cargo build --profile lambda -p stratus-...` for
every member of functions/ (the `lambda` profile of Cargo.toml, the same settings). The functions reach
SQS and S3 as on AWS (`aws`, with dummy credentials: no request here touches them) and the
database by its URL, not through Secrets Manager (one more round trip at cold start on AWS).
Needs PyYAML (the prefect venv has it).
"""

import argparse
import http.server
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

# One cheap request per HTTP function: (method, path, body).
HTTP = {
    "RootFunction": ("GET", "/api/health", None),
    "FlowsFunction": ("POST", "/api/flows/filter", {}),
    "FlowRunsFunction": ("POST", "/api/flow_runs/filter", {}),
    "TaskRunsFunction": ("POST", "/api/task_runs/filter", {}),
    "LogsFunction": ("POST", "/api/logs/filter", {}),
    "BlocksFunction": ("POST", "/api/block_types/filter", {}),
    "ConcurrencyFunction": ("POST", "/api/v2/concurrency_limits/filter", {}),
    "AdminFunction": ("GET", "/api/admin/version", None),
    "WorkPoolsFunction": ("POST", "/api/work_pools/filter", {}),
    "DeploymentsFunction": ("POST", "/api/deployments/filter", {}),
    "VariablesFunction": ("POST", "/api/variables/filter", {}),
    "ArtifactsFunction": ("POST", "/api/artifacts/filter", {}),
    "NotificationPoliciesFunction": ("POST", "/api/flow_run_notification_policies/filter", {}),
    "UiFunction": ("GET", "/", None),
}


def http_event(method, path, body):
    now = time.time()
    return {
        "version": "2.0",
        "routeKey": f"ANY {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "bench.execute-api.us-east-1.amazonaws.com"},
        "requestContext": {
            "accountId": "000000000000", "apiId": "bench", "domainName": "bench.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "bench", "requestId": str(uuid.uuid4()), "routeKey": f"ANY {path}", "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)), "timeEpoch": int(now * 1000),
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "bench"},
        },
        "body": json.dumps(body) if body is not None else None,
        "isBase64Encoded": False,
    }


class Responses(http.server.BaseHTTPRequestHandler):
    """Where the migration function answers CloudFormation."""

    def do_PUT(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def events(function_id, response_url):
    if function_id in HTTP:
        return lambda: http_event(*HTTP[function_id])
    if function_id == "SchedulerFunction":
        return lambda: {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
                        "account": "000000000000", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "region": "us-east-1", "resources": ["arn:aws:events:us-east-1:000000000000:rule/bench"], "detail": {}}
    if function_id == "NotifierFunction":
        # A notification that is no longer there: read, found gone, done.
        return lambda: {"Records": [{"messageId": str(uuid.uuid4()), "receiptHandle": "r", "body": json.dumps({"notification_id": -1}),
                                     "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {}, "md5OfBody": "",
                                     "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:bench",
                                     "awsRegion": "us-east-1"}]}
    if function_id == "MigrateFunction":
        return lambda: {"RequestType": "Create", "ResponseURL": response_url, "StackId": "bench", "RequestId": str(uuid.uuid4()),
                        "LogicalResourceId": "SchemaMigrations", "ResourceType": "Custom::SchemaMigrations",
                        "ResourceProperties": {}}
    return None


def functions_of(template):
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    doc = yaml.load(template.read_text(), Loader=Loader)
    found = []
    for fid, r in doc["Resources"].items():
        if r["Type"] != "AWS::Serverless::Function":
            continue
        binary = ((r.get("Metadata") or {}).get("BuildProperties") or {}).get("Binary")
        if not binary:
            manifest = (template.parent / r["Properties"]["CodeUri"] / "Cargo.toml").read_text()
            binary = re.search(r'^name\s*=\s*"([^"]+)"', manifest, re.M).group(1)
        found.append((fid, binary))
    # The schema step first: it migrates the database the others read.
    return sorted(found, key=lambda f: f[0] != "MigrateFunction")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def invoke(port, event):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/2015-03-31/functions/_/invocations", data=json.dumps(event).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as res:
        answer = json.load(res)
    if isinstance(answer, dict) and "statusCode" in answer and answer["statusCode"] >= 400:
        raise RuntimeError(f"answered {answer['statusCode']}: {answer.get('body')}")
    return answer


def peak_rss_kb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def measure(args, fid, binary, make_event, manifest_dir):
    env = {
        "PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
        "STRATUS_DATABASE_URL": args.database_url, "STRATUS_SQS_ENDPOINT": "aws", "STRATUS_S3_ENDPOINT": "aws",
        "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_EC2_METADATA_DISABLED": "true",
        "STRATUS_SCHEDULER_INTERVAL_SECONDS": "3600", "STRATUS_LOG": "warn",
        "AWS_LAMBDA_FUNCTION_NAME": fid, "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
    }
    firsts, warms, rss = [], [], 0
    for _ in range(args.runs):
        port = free_port()
        emulator = subprocess.Popen([args.cargo_lambda, "lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1", "-P", str(port)],
                                    cwd=manifest_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the emulator did not listen")
                    time.sleep(0.01)
            started = time.monotonic()
            proc = subprocess.Popen([str(binary)], env=dict(env, AWS_LAMBDA_RUNTIME_API=f"http://127.0.0.1:{port}/.rt"),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                invoke(port, make_event())
                firsts.append((time.monotonic() - started) * 1000)
                for _ in range(args.warm):
                    t = time.monotonic()
                    invoke(port, make_event())
                    warms.append((time.monotonic() - t) * 1000)
                rss = max(rss, peak_rss_kb(proc.pid))
            finally:
                proc.kill()
                _, err = proc.communicate()
                if proc.returncode not in (0, -9) and err:
                    print(err.decode(errors="replace")[-2000:], file=sys.stderr)
        finally:
            emulator.kill()
            emulator.wait()
    return statistics.median(firsts), statistics.median(warms) if warms else 0.0, rss / 1024, binary.stat().st_size / 1e6


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--database-url", required=True)
    p.add_argument("--functions-dir", default=str(Path.home() / ".cache/stratus/target/lambda"))
    p.add_argument("--cargo-lambda", default=os.environ.get("STRATUS_CARGO_LAMBDA", "cargo-lambda"))
    p.add_argument("--template", default=str(ROOT / "infra/template.yaml"))
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warm", type=int, default=20)
    args = p.parse_args()

    responses = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Responses)
    threading.Thread(target=responses.serve_forever, daemon=True).start()
    response_url = f"http://127.0.0.1:{responses.server_address[1]}/cfn"
    manifest_dir = Path(tempfile.mkdtemp(prefix="stratus-cold-start-"))
    (manifest_dir / "src").mkdir()
    (manifest_dir / "Cargo.toml").write_text('[package]\nname = "bench"\nversion = "0.0.0"\nedition = "2021"\n\n[workspace]\n')
    (manifest_dir / "src/main.rs").write_text("fn main() {}\n")

    print(f"{'function':<30} {'first answer':>13} {'warm answer':>12} {'peak RSS':>9} {'binary':>8}")
    rows = []
    for fid, binary_name in functions_of(Path(args.template)):
        # `cargo build --profile lambda` leaves <dir>/<binary>; `sam build` (infra/build)
        # leaves <dir>/<function id>/bootstrap.
        binary = Path(args.functions_dir) / binary_name
        if not binary.is_file():
            binary = Path(args.functions_dir) / fid / "bootstrap"
        make_event = events(fid, response_url)
        if make_event is None or not binary.is_file():
            print(f"{fid:<30} skipped ({binary} missing)" if make_event else f"{fid:<30} skipped (no event for it)")
            continue
        first, warm, rss, size = measure(args, fid, binary, make_event, manifest_dir)
        rows.append((fid, first, warm, rss, size))
        print(f"{fid:<30} {first:>10.1f} ms {warm:>9.2f} ms {rss:>6.1f} MB {size:>5.1f} MB", flush=True)
    http_rows = [r for r in rows if r[0] in HTTP]
    if http_rows:
        print(f"HTTP functions: first answer at most {max(r[1] for r in http_rows):.1f} ms (goal 20), "
              f"peak RSS at most {max(r[3] for r in http_rows):.1f} MB (goal 16), binaries at most {max(r[4] for r in http_rows):.1f} MB (goal 12)")


if __name__ == "__main__":
    main()
