"""Schedules with the stock client: `flow.serve()` with an interval schedule gets its runs
created by the Stratus scheduler and executes them on time."""

import time

from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.sorting import FlowRunSort


def test_a_served_flow_runs_its_interval_schedule(scripts, client):
    proc = scripts.start(
        """
        import os
        os.environ["PREFECT_RUNNER_POLL_FREQUENCY"] = "1"
        from prefect import flow, get_run_logger

        @flow
        def ticker():
            get_run_logger().info("tick")
            return 1

        # The engine imports this file to load the flow: serve only when run as a script.
        if __name__ == "__main__":
            ticker.serve(name="every-10s", interval=10)
        """
    )
    try:
        deployments = DeploymentFilter(name=DeploymentFilterName(any_=["every-10s"]))
        completed = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=["COMPLETED"])))
        deadline = time.time() + 90
        runs = []
        while time.time() < deadline:
            runs = client(
                lambda c: c.read_flow_runs(
                    deployment_filter=deployments, flow_run_filter=completed, sort=FlowRunSort.EXPECTED_START_TIME_ASC
                )
            )
            if len(runs) >= 2:
                break
            time.sleep(1)
        assert len(runs) >= 2, f"served runs did not complete (runner exit code {proc.poll()})"
        assert all(r.auto_scheduled for r in runs)
        assert "auto-scheduled" in runs[0].tags
        gap = (runs[1].expected_start_time - runs[0].expected_start_time).total_seconds()
        assert abs(gap - 10) < 0.01, gap
        # Runs were made ahead of time and did not start before their time (less the
        # under-a-second the whole-second WAIT allows, as in Prefect).
        for run in runs:
            assert (run.expected_start_time - run.start_time).total_seconds() < 1, run
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except Exception:
            proc.kill()
            proc.wait(timeout=10)
