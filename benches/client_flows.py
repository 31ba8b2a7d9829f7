"""The stock client's own time for two flows against PREFECT_API_URL: 100 tasks called one
after another, and 200 tasks submitted at once (the default ConcurrentTaskRunner). Each
flow runs once to warm up (imports, the flow's registration), then three times; prints the
median and the range, one line per flow, tab-separated (benches/api.rs reads them).

    PREFECT_API_URL=http://127.0.0.1:4200/api python benches/client_flows.py
"""

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


def timed(fn, expected):
    assert fn() == expected
    times = []
    for _ in range(3):
        started = time.perf_counter()
        assert fn() == expected
        times.append(time.perf_counter() - started)
    return times


def main():
    for label, fn, expected in [
        ("flow of 100 sequential tasks", sequential_100, 100),
        ("flow of 200 .submit()ted tasks", submitted_200, sum(range(1, 201))),
    ]:
        times = timed(fn, expected)
        print(
            f"{label}\t{statistics.median(times):.2f} s median of 3 "
            f"({min(times):.2f}-{max(times):.2f})",
            flush=True,
        )


if __name__ == "__main__":
    main()
