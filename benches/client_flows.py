"""The stock client's own time for two flows against PREFECT_API_URL: 100 tasks called one
after another, and 200 tasks submitted at once (the default ConcurrentTaskRunner). Each
flow runs once to warm up (imports, the flow's registration), then three times; prints the
median and the range, one line per flow, tab-separated (benches/api.rs reads them).

Where a run's time goes: the CPU seconds of this process (the client), of the server
(STRATUS_BENCH_SERVER_PID, when set) and of the local Postgres processes, per flow run.
What is left of the wall time is waiting: the network, and each side waiting for the other.

    PREFECT_API_URL=http://127.0.0.1:4200/api python benches/client_flows.py
"""

import os
import statistics
import time

from prefect import flow, task


@task
def step(x):
    return x + 1


@flow
def sequential_100():
    x = 0
    for _ in range(100):
        x = step(x)
    return x


@flow
def submitted_200():
    futures = [step.submit(i) for i in range(200)]
    return sum(f.result() for f in futures)


def cpu_seconds(pid, reaped=False):
    """utime + stime of a process (and of its reaped children), from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def postgres_cpu():
    total = 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != "postgres":
                    continue
        except OSError:
            continue
        total += cpu_seconds(pid, reaped=True)
    return total


def timed(fn, expected):
    server = os.environ.get("STRATUS_BENCH_SERVER_PID")
    assert fn() == expected
    times = []
    client0, server0, pg0 = time.process_time(), server and cpu_seconds(server), postgres_cpu()
    for _ in range(3):
        started = time.perf_counter()
        assert fn() == expected
        times.append(time.perf_counter() - started)
    split = {
        "client": (time.process_time() - client0) / 3,
        "Postgres": (postgres_cpu() - pg0) / 3,
    }
    if server:
        split["server"] = (cpu_seconds(server) - server0) / 3
    return times, split


def main():
    for label, fn, expected in [
        ("flow of 100 sequential tasks", sequential_100, 100),
        ("flow of 200 .submit()ted tasks", submitted_200, sum(range(1, 201))),
    ]:
        times, split = timed(fn, expected)
        cpu = ", ".join(f"{who} {seconds:.2f} s" for who, seconds in split.items())
        print(
            f"{label}\t{statistics.median(times):.2f} s median of 3 "
            f"({min(times):.2f}-{max(times):.2f}); CPU per run: {cpu}",
            flush=True,
        )


if __name__ == "__main__":
    main()
