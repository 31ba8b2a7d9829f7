"""Cancellation and pause/resume through the stock client."""

import time
from uuid import UUID, uuid4

import pytest
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.responses import SetStateStatus
from prefect.exceptions import PrefectHTTPStatusError
from prefect.states import Cancelled, Cancelling, Running, Scheduled

from _support import flow_run_states, names


def _a_flow(name):
    from prefect import flow

    @flow(name=name)
    def noop():
        pass

    return noop


def test_cancelling_a_scheduled_run_cancels_it(client):
    async def create_and_cancel(c):
        run = await c.create_flow_run(_a_flow("to-cancel"), state=Scheduled())
        result = await c.set_flow_run_state(run.id, Cancelling())
        return run, result

    run, result = client(create_and_cancel)
    assert run.state.type == StateType.SCHEDULED
    # A scheduled run has no infrastructure to stop: it is cancelled at once (REJECT).
    assert result.status == SetStateStatus.REJECT
    assert result.state.type == StateType.CANCELLED
    run = client(lambda c: c.read_flow_run(run.id))
    assert run.state.type == StateType.CANCELLED
    assert run.state.name == "Cancelled"


def test_cancelling_a_running_run_waits_for_its_infrastructure(client):
    async def go(c):
        run = await c.create_flow_run(_a_flow("to-cancel-running"))
        running = await c.set_flow_run_state(run.id, Running())
        cancelling = await c.set_flow_run_state(run.id, Cancelling())
        # Leaving CANCELLING for anything but CANCELLED is rejected...
        back = await c.set_flow_run_state(run.id, Running())
        # ...and the worker's forced CANCELLED is accepted.
        cancelled = await c.set_flow_run_state(run.id, Cancelled(), force=True)
        # CANCELLED is final without force.
        again = await c.set_flow_run_state(run.id, Running())
        return run, running, cancelling, back, cancelled, again

    run, running, cancelling, back, cancelled, again = client(go)
    assert run.state.type == StateType.PENDING
    assert running.status == SetStateStatus.ACCEPT
    assert cancelling.status == SetStateStatus.ACCEPT and cancelling.state.type == StateType.CANCELLING
    assert back.status == SetStateStatus.REJECT and back.state.type == StateType.CANCELLING
    assert cancelled.status == SetStateStatus.ACCEPT and cancelled.state.type == StateType.CANCELLED
    assert again.status == SetStateStatus.REJECT and again.state.type == StateType.CANCELLED
    assert names(flow_run_states(client, run.id)) == ["Pending", "Running", "Cancelling", "Cancelled"]


def test_pause_and_resume_a_running_flow(scripts, client):
    flow_name = f"pausing-{uuid4().hex[:8]}"
    proc = scripts.start(
        f"""
        import json
        from prefect import flow, pause_flow_run, task

        @task
        def after():
            return "resumed"

        @flow(name="{flow_name}")
        def pausing():
            pause_flow_run(timeout=60, poll_interval=1)
            return after()

        state = pausing(return_state=True)
        print(json.dumps({{"result": state.result(), "flow_run_id": str(state.state_details.flow_run_id)}}))
        """
    )
    try:
        paused = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])))
        of_flow = FlowFilter(name=FlowFilterName(any_=[flow_name]))
        deadline = time.monotonic() + 60
        runs = []
        while not runs:
            assert proc.poll() is None, f"flow script exited before pausing:\n{proc.communicate()}"
            assert time.monotonic() < deadline, "the flow run never became PAUSED"
            time.sleep(0.3)
            runs = client(lambda c: c.read_flow_runs(flow_filter=of_flow, flow_run_filter=paused))
        (run,) = runs
        assert run.state.name == "Paused"
        assert run.state.state_details.pause_timeout is not None
        assert run.state.state_details.pause_reschedule is False
        result = client(lambda c: c.resume_flow_run(run.id))
        assert result.status == SetStateStatus.ACCEPT
        assert result.state.type == StateType.RUNNING
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    out = scripts.wait(proc)
    assert out["result"] == "resumed"
    assert UUID(out["flow_run_id"]) == run.id
    run = client(lambda c: c.read_flow_run(run.id))
    assert run.state.type == StateType.COMPLETED
    assert names(flow_run_states(client, run.id)) == ["Pending", "Running", "Paused", "Running", "Completed"]

    # Resuming a run that is not paused is aborted, with HTTP 200.
    again = client(lambda c: c.resume_flow_run(run.id))
    assert again.status == SetStateStatus.ABORT
    assert again.details.reason == "Cannot resume a flow run that is not paused."


@pytest.mark.stratus_only
def test_resuming_a_missing_run_is_404(client):
    # Prefect 2.20 answers 500 here (an unhandled error); Stratus answers 404.
    with pytest.raises(PrefectHTTPStatusError) as err:
        client(lambda c: c.resume_flow_run(uuid4()))
    assert err.value.response.status_code == 404


def test_state_machine_guards(client):
    from prefect import task

    @task(name="guarded")
    def guarded():
        pass

    async def go(c):
        import pendulum
        from prefect.states import Pending

        out = {}
        later = await c.create_flow_run(
            _a_flow("guarded-flow"), state=Scheduled(scheduled_time=pendulum.now("UTC").add(seconds=30))
        )
        # Early Pending/Running of a scheduled run must WAIT for its scheduled time.
        out["early"] = await c.set_flow_run_state(later.id, Running())
        out["early_read"] = await c.read_flow_run(later.id)

        run = await c.create_flow_run(_a_flow("guarded-flow"))
        task_run = await c.create_task_run(guarded, flow_run_id=run.id, dynamic_key="0")
        # A task can't start while its flow run is not running.
        out["task_early"] = await c.set_task_run_state(task_run.id, Running())
        out["running"] = await c.set_flow_run_state(run.id, Running())
        # Pending-claim exclusivity: a running run can't be claimed again.
        out["pending_again"] = await c.set_flow_run_state(run.id, Pending())
        out["task_running"] = await c.set_task_run_state(task_run.id, Running())
        out["run"] = await c.read_flow_run(run.id)
        return out

    out = client(go)
    assert out["early"].status == SetStateStatus.WAIT
    assert 25 <= out["early"].details.delay_seconds <= 30
    assert out["early"].state.type == StateType.SCHEDULED  # WAIT carries the current state
    assert out["early_read"].state.type == StateType.SCHEDULED
    assert out["task_early"].status == SetStateStatus.ABORT
    assert out["task_early"].details.reason == "The enclosing flow must be running to begin task execution."
    assert out["running"].status == SetStateStatus.ACCEPT
    assert out["pending_again"].status == SetStateStatus.ABORT
    assert out["task_running"].status == SetStateStatus.ACCEPT
    assert out["run"].state.type == StateType.RUNNING
