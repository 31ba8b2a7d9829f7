"""Checks infra/template.yaml beyond what cfn-lint and `sam validate --lint` see, offline:

1. SAM's own transform accepts it, and the CloudFormation it makes has no dependency
   cycle (an API function that names the HTTP API is one: the API names every function
   it routes to).
2. Every function's cargo-lambda binary is a binary of this workspace.
3. Every route the Rust routers serve reaches, through the HTTP API's routes, the function
   whose crate serves it; and every function with routes serves some.

Run with the Python of the infra venv (`scripts/test` makes it):
    python infra/check.py [infra/template.yaml]
"""

import os
import re
import sys
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


def workspace_binaries():
    """Binary name -> (its crate's directory, whether it is the crate's main binary: the
    one that serves the crate's routes)."""
    binaries = {}
    for manifest in (ROOT / "functions").glob("*/Cargo.toml"):
        crate = re.search(r'^name\s*=\s*"([^"]+)"', manifest.read_text(), re.M).group(1)
        src = manifest.parent / "src"
        if (src / "main.rs").exists():
            binaries[crate] = (manifest.parent, True)
        for extra in (src / "bin").glob("*.rs"):
            binaries[extra.stem] = (manifest.parent, False)
    return binaries


def served_routes(crate_dir):
    """The paths a function crate's routers serve, as the HTTP API sees them."""
    paths = []
    for source in (crate_dir / "src").rglob("*.rs"):
        at_root = source.relative_to(crate_dir).as_posix() == "src/pages/mod.rs"
        for path in re.findall(r'\.route\(\s*"([^"]+)"', source.read_text()):
            paths.append(path if at_root else "/api" + path)
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
    template.setdefault("Globals", {}).setdefault("Function", {})["CodeUri"] = "s3://stratus-check/code.zip"
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"].pop("CodeUri", None)
    transformed = transform(template, {}, NoManagedPolicies())
    cycle = find_cycle(transformed["Resources"])
    if cycle:
        problems.append("dependency cycle: " + " -> ".join(cycle))

    # 2 and 3. Binaries and routes.
    binaries = workspace_binaries()
    routes = []  # (path, function binary)
    functions = {}
    for name, resource in yaml_parse(template_path.read_text())["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        binary = resource.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
        if binary not in binaries:
            problems.append(f"{name}: binary {binary!r} is not a binary of this workspace")
            continue
        functions[name] = binary
        for event in resource["Properties"].get("Events", {}).values():
            if event["Type"] == "HttpApi":
                routes.append((event["Properties"]["Path"], binary))
    for binary in sorted(set(functions.values())):
        crate_dir, serves_routes = binaries[binary]
        if not serves_routes:
            continue
        served = served_routes(crate_dir)
        for path in served:
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

    if problems:
        print(f"{template_path}:")
        for p in problems:
            print(f"  - {p}")
        sys.exit(1)
    print(f"{template_path}: transforms, no dependency cycle, {len(functions)} functions, "
          f"{len(routes)} routes, every served path routed to its function")


if __name__ == "__main__":
    main()
