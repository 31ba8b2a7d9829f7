"""Checks infra/template.yaml beyond what cfn-lint and `sam validate --lint` see, offline:

1. SAM's own transform accepts it, and the CloudFormation it makes has no dependency
   cycle (an API function that names the HTTP API is one: the API names every function
   it routes to).
2. Every function's CodeUri is a workspace member, and the binary cargo-lambda builds
   there (its `Binary`, else the member's only one) exists.
3. Every binary of `functions/` is deployed, every route the Rust routers serve reaches,
   through the HTTP API's routes, the function whose crate serves it, and every function
   with routes serves some, under `/api` and under a workspace's prefix
   (`/api/accounts/{account}/workspaces/{workspace}`). (Paths are compared without trailing slashes: how API
   Gateway treats those cannot be checked here.)
4. The production shape: the database URL only through the Secrets Manager secret (no
   URL in any environment, the secret readable by the functions); the connection budget
   (for every DatabaseMaxConnections value, reserved concurrency times pool size over all
   functions stays 10 under it; every function has reserved concurrency, the scheduler 1);
   every queue an event source reads redrives to a dead-letter queue of the template, with
   the code's receive count, and an alarm on that queue's depth; every function has a log
   group with retention and alarms on errors and throttles; SchemaVersion is the newest
   migration's version; the architecture is a parameter.

Run with the Python of the infra venv (`scripts/test` makes it):
    python infra/check.py [infra/template.yaml]
"""

import os
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from samtranslator.translator.transform import transform  # noqa: E402
from samtranslator.yaml_helper import yaml_parse  # noqa: E402


class NoManagedPolicies:
    def load(self):
        return {}


def references(node):
    """The resources and parameters a piece of CloudFormation names."""
    if isinstance(node, dict):
        if "Ref" in node and isinstance(node["Ref"], str):
            yield node["Ref"]
        if "Fn::GetAtt" in node:
            target = node["Fn::GetAtt"]
            yield (target[0] if isinstance(target, list) else target.split(".")[0])
        if "Fn::Sub" in node:
            template = node["Fn::Sub"][0] if isinstance(node["Fn::Sub"], list) else node["Fn::Sub"]
            for name in re.findall(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z.]+)?\}", template):
                yield name
        for value in node.values():
            yield from references(value)
    elif isinstance(node, list):
        for value in node:
            yield from references(value)


def find_cycle(resources):
    graph = {}
    for name, resource in resources.items():
        deps = set(references(resource.get("Properties", {})))
        depends_on = resource.get("DependsOn", [])
        deps |= set([depends_on] if isinstance(depends_on, str) else depends_on)
        graph[name] = {d for d in deps if d in resources and d != name}
    state = {}

    def visit(node, path):
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                return path + [node, dep]
            if dep not in state:
                found = visit(dep, path + [node])
                if found:
                    return found
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [])
            if found:
                return found[found.index(found[-1]):]
    return None


def package_name(crate_dir):
    return re.search(r'^name\s*=\s*"([^"]+)"', (crate_dir / "Cargo.toml").read_text(), re.M).group(1)


def crate_binaries(crate_dir):
    """A member's binaries: name -> whether it is the main one (`src/main.rs`, which
    serves the member's routes)."""
    src = crate_dir / "src"
    binaries = {extra.stem: False for extra in (src / "bin").glob("*.rs")}
    if (src / "main.rs").exists():
        binaries[package_name(crate_dir)] = True
    return binaries


WORKSPACE_PREFIX = "/api/accounts/{account}/workspaces/{workspace}"


def served_routes(crate_dir):
    """The paths a function crate's routers serve, as the HTTP API sees them."""
    paths = []
    for source in (crate_dir / "src").rglob("*.rs"):
        at_root = source.relative_to(crate_dir).as_posix() == "src/pages/mod.rs"
        text = source.read_text()
        for path in re.findall(r'\.(?:route|undocumented)\(\s*"([^"]+)"', text):
            paths.append(path if at_root else "/api" + path)
        # The routes flow runs and task runs share (http/src/run_routes.rs, `routes`).
        for kind in re.findall(r"run_routes::routes::<(FlowRun|TaskRun)>", text):
            plural = {"FlowRun": "flow_runs", "TaskRun": "task_runs"}[kind]
            for tail in ["/filter", "/count", "/history", "/{id}", "/{id}/set_state"]:
                paths.append(f"/api/{plural}{tail}")
            paths += [f"/api/{plural[:-1]}_states", f"/api/{plural[:-1]}_states/{{id}}"]
    return paths


def matches(route, path):
    """How an HTTP API route matches a path: None, or how specific the match is."""
    r, p = route.strip("/").split("/"), path.strip("/").split("/")
    if route == "/":
        return (100,) if path == "/" else None
    score = 0
    for i, part in enumerate(r):
        if part.endswith("+}"):
            return (score, 0) if len(p) > i else None
        if i >= len(p):
            return None
        if part.startswith("{"):
            score += 1
        elif part == p[i]:
            score += 2
        else:
            return None
    return (score, 1) if len(p) == len(r) else None


def main():
    template_path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "infra" / "template.yaml"
    template = yaml_parse(template_path.read_text())
    problems = []

    # 1. The transform, then cycles.
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://stratus-check/code.zip"
    transformed = transform(template, {}, NoManagedPolicies())
    cycle = find_cycle(transformed["Resources"])
    if cycle:
        problems.append("dependency cycle: " + " -> ".join(cycle))

    # 2 and 3. Members, binaries and routes.
    routes = []  # (path, function binary)
    functions = {}  # name -> (binary, crate dir, serves the crate's routes)
    for name, resource in yaml_parse(template_path.read_text())["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        code = resource["Properties"].get("CodeUri")
        crate_dir = (template_path.parent / code).resolve() if isinstance(code, str) else None
        if crate_dir is None or not (crate_dir / "Cargo.toml").exists() or ROOT not in crate_dir.parents:
            problems.append(f"{name}: CodeUri {code!r} is not a member of this workspace")
            continue
        binaries = crate_binaries(crate_dir)
        binary = ((resource.get("Metadata") or {}).get("BuildProperties") or {}).get("Binary")
        if binary is None and len(binaries) != 1:
            problems.append(f"{name}: {code} has {len(binaries)} binaries; say which one with Binary")
            continue
        binary = binary or next(iter(binaries))
        if binary not in binaries:
            problems.append(f"{name}: binary {binary!r} is not a binary of {code}")
            continue
        functions[name] = (binary, crate_dir, binaries[binary])
        for event in resource["Properties"].get("Events", {}).values():
            if event["Type"] == "HttpApi":
                routes.append((event["Properties"]["Path"], binary))
    deployed = {binary for binary, _, _ in functions.values()}
    for manifest in sorted((ROOT / "functions").glob("*/Cargo.toml")):
        for binary in crate_binaries(manifest.parent):
            if binary not in deployed:
                problems.append(f"{binary} (functions/{manifest.parent.name}) is not deployed by any function")

    for binary, crate_dir, serves_routes in sorted(set(functions.values())):
        if not serves_routes:
            continue
        served = served_routes(crate_dir)
        # A workspace's API (`/api/accounts/{a}/workspaces/{w}/...`) reaches the same
        # functions as the default workspace's.
        in_workspace = [WORKSPACE_PREFIX + p[len("/api"):] for p in served if p.startswith("/api/")]
        for path in served + in_workspace:
            candidates = [(matches(route, path), route, target) for route, target in routes]
            candidates = [c for c in candidates if c[0] is not None]
            if not candidates:
                problems.append(f"{path} ({binary}) has no route in the template")
                continue
            _, route, target = max(candidates)
            if target != binary:
                problems.append(f"{path} is served by {binary} but the template routes it ({route}) to {target}")
        if not served and binary in [b for _, b in routes]:
            problems.append(f"{binary} has routes in the template but serves none")

    problems += production_shape(yaml_parse(template_path.read_text()))

    if problems:
        print(f"{template_path}:")
        for p in problems:
            print(f"  - {p}")
        sys.exit(1)
    print(f"{template_path}: transforms, no dependency cycle, {len(functions)} functions, "
          f"{len(routes)} routes, every served path routed to its function")


def tag(node, name):
    """The argument of intrinsic `name` (`!Ref x` parses to {"Ref": "x"})."""
    if isinstance(node, dict) and len(node) == 1:
        key = next(iter(node))
        if key in (name, "Fn::" + name):
            return node[key]
    return None


def production_shape(t):
    problems = []
    resources = t["Resources"]
    functions = {n: r for n, r in resources.items() if r["Type"] == "AWS::Serverless::Function"}
    globals_env = t["Globals"]["Function"]["Environment"]["Variables"]

    # The secret.
    text = str(t)
    if "STRATUS_DATABASE_URL" in text or "DatabaseUrl" in text:
        problems.append("a database URL is passed in plain text (use DatabaseSecretArn)")
    if tag(globals_env.get("STRATUS_DATABASE_SECRET_ARN"), "Ref") != "DatabaseSecretArn":
        problems.append("functions are not given STRATUS_DATABASE_SECRET_ARN: !Ref DatabaseSecretArn")
    statements = resources["StratusAccess"]["Properties"]["PolicyDocument"]["Statement"]
    if not any(s.get("Action") == "secretsmanager:GetSecretValue" and tag(s.get("Resource"), "Ref") == "DatabaseSecretArn"
               for s in statements):
        problems.append("the functions' policy does not let them read DatabaseSecretArn")

    # Nothing open to the internet: keys required, and browsers of other sites kept out.
    if globals_env.get("STRATUS_AUTH") != "required":
        problems.append("functions are not given STRATUS_AUTH: required (the API would be open to anyone)")
    for name, r in resources.items():
        cors = r["Properties"].get("CorsConfiguration") if r["Type"] == "AWS::Serverless::HttpApi" else None
        if cors and "*" in str(cors.get("AllowOrigins", "")):
            problems.append(f"{name} allows every origin (CORS): let STRATUS_CORS_ORIGINS decide")

    # The connection budget.
    budgets = t["Mappings"]["ConnectionBudget"]
    if set(budgets) != set(t["Parameters"]["DatabaseMaxConnections"]["AllowedValues"]):
        problems.append("ConnectionBudget does not cover every DatabaseMaxConnections value")
    for budget, row in budgets.items():
        total = 0
        for name, f in functions.items():
            reserved = f["Properties"].get("ReservedConcurrentExecutions")
            found = tag(reserved, "FindInMap")
            if found is not None:
                reserved = row[found[2]]
            if not isinstance(reserved, int):
                problems.append(f"{name}: no reserved concurrency")
                continue
            total += reserved * row["PoolSize"]
        if total > int(budget) - 10:
            problems.append(f"with max_connections {budget}, the functions may open {total} connections")
    if functions["SchedulerFunction"]["Properties"].get("ReservedConcurrentExecutions") != 1:
        problems.append("the scheduler's reserved concurrency is not 1")
    pool = tag(globals_env.get("STRATUS_DATABASE_POOL_SIZE"), "FindInMap")
    if not pool or pool[2] != "PoolSize":
        problems.append("the pool size does not come from ConnectionBudget")
    interval = functions["SchedulerFunction"]["Properties"]["Environment"]["Variables"]["STRATUS_SCHEDULER_INTERVAL_SECONDS"]
    if int(interval) > 10:
        problems.append(f"the scheduler ticks every {interval} s: Late runs and pauses need seconds")

    # Dead-letter queues and their alarms.
    receives = re.search(r"NOTIFICATION_RECEIVES: u32 = (\d+);", (ROOT / "aws/src/sqs.rs").read_text())
    alarmed = {
        tag(d.get("Value"), "GetAtt")[0] if isinstance(tag(d.get("Value"), "GetAtt"), list) else str(tag(d.get("Value"), "GetAtt")).split(".")[0]
        for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"
        for d in r["Properties"].get("Dimensions", []) if d.get("Name") == "QueueName"
    }
    for name, f in functions.items():
        for event in f["Properties"].get("Events", {}).values():
            if event["Type"] != "SQS":
                continue
            queue_name = tag(event["Properties"]["Queue"], "GetAtt")
            queue_name = queue_name[0] if isinstance(queue_name, list) else queue_name.split(".")[0]
            redrive = resources[queue_name]["Properties"].get("RedrivePolicy")
            if not redrive:
                problems.append(f"{queue_name} (read by {name}) has no dead-letter queue")
                continue
            target = tag(redrive["deadLetterTargetArn"], "GetAtt")
            target = target[0] if isinstance(target, list) else target.split(".")[0]
            if resources.get(target, {}).get("Type") != "AWS::SQS::Queue":
                problems.append(f"{queue_name}'s dead-letter queue {target} is not a queue of the template")
            if receives and redrive.get("maxReceiveCount") != int(receives.group(1)):
                problems.append(f"{queue_name}'s maxReceiveCount is not the code's NOTIFICATION_RECEIVES ({receives.group(1)})")
            if target not in alarmed:
                problems.append(f"no alarm on the depth of {target}")

    # Logs and alarms of every function.
    log_groups = {str(r["Properties"].get("LogGroupName")) for r in resources.values() if r["Type"] == "AWS::Logs::LogGroup"}
    metrics = {(r["Properties"].get("MetricName"), tag(d.get("Value"), "Ref"))
               for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"
               for d in r["Properties"].get("Dimensions", []) if d.get("Name") == "FunctionName"}
    for name in functions:
        if not any("${" + name + "}" in g for g in log_groups):
            problems.append(f"{name} has no log group with a retention")
        for metric in ("Errors", "Throttles"):
            if (metric, name) not in metrics:
                problems.append(f"{name} has no alarm on {metric}")

    # The schema step and the architecture.
    newest = max(int(m.group(1)) for m in (re.match(r"V(\d+)__", p.name) for p in (ROOT / "migrations").iterdir()) if m)
    version = resources["SchemaMigrations"]["Properties"].get("SchemaVersion")
    if version != newest:
        problems.append(f"SchemaMigrations' SchemaVersion is {version}, the newest migration is V{newest}")
    if tag(t["Globals"]["Function"]["Architectures"][0], "Ref") != "Architecture":
        problems.append("the architecture is not the Architecture parameter")
    problems += lambda_build_settings()
    return problems


def lambda_build_settings():
    """What infra/build relies on: the lambda profile unwinds (a handler's panic is a 500),
    and cargo-lambda's own release settings, which would override the profile's (thin LTO,
    panic=abort), are turned off."""
    problems = []
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    profile = cargo.get("profile", {}).get("lambda", {})
    if profile.get("panic") != "unwind":
        problems.append("[profile.lambda] does not say panic = \"unwind\" (cargo-lambda's builds would abort)")
    lambda_build = cargo.get("workspace", {}).get("metadata", {}).get("lambda", {}).get("build", {})
    if lambda_build.get("disable_optimizations") is not True:
        problems.append("cargo-lambda's release settings are not turned off "
                        "([workspace.metadata.lambda.build] disable_optimizations = true)")
    return problems


if __name__ == "__main__":
    main()
