"""Running flows with the stock client and reading everything back through it."""

from uuid import UUID, uuid4

import pytest
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterTags,
    LogFilter,
    LogFilterFlowRunId,
    TaskRunFilter,
    TaskRunFilterName,
)
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError


def task_runs_of(client, flow_run_id):
    return client(
        lambda c: c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)])))
    )


def test_tasks_return_values_and_states_are_recorded(run_flow, client):
    out = run_flow(
        """
        import json
        from prefect import flow, task

        @task
        def add(a, b):
            return a + b

        @flow
        def adder(x: int):
            # A future passed on is recorded as the second task's upstream input.
            first = add.submit(x, 1)
            return add.submit(first, 10).result()

        state = adder(5, return_state=True)
        from prefect.context import get_run_context
        print(json.dumps({"result": state.result(), "flow_run_id": str(state.state_details.flow_run_id)}))
        """
    )
    assert out["result"] == 16
    run = client(lambda c: c.read_flow_run(UUID(out["flow_run_id"])))
    assert run.state.type.value == "COMPLETED"
    assert run.run_count == 1
    assert run.start_time is not None and run.end_time is not None
    assert run.parameters == {"x": 5}
    tasks = task_runs_of(client, out["flow_run_id"])
    assert sorted(t.name for t in tasks) == ["add-0", "add-1"]
    assert all(t.state.type.value == "COMPLETED" for t in tasks)
    later = next(t for t in tasks if t.name == "add-1")
    earlier = next(t for t in tasks if t.name == "add-0")
    assert [i.id for i in later.task_inputs["a"]] == [earlier.id]


def test_task_retries_run_until_success(run_flow, client):
    out = run_flow(
        """
        import json
        from prefect import flow, task

        calls = {"n": 0}

        @task(retries=3, retry_delay_seconds=0)
        def flaky():
            calls["n"] += 1
            if calls["n"] < 3:
                raise ValueError(f"attempt {calls['n']} failed")
            return calls["n"]

        @flow
        def retrying():
            return flaky()

        state = retrying(return_state=True)
        print(json.dumps({"result": state.result(), "flow_run_id": str(state.state_details.flow_run_id)}))
        """
    )
    assert out["result"] == 3
    (task,) = task_runs_of(client, out["flow_run_id"])
    assert task.state.type.value == "COMPLETED"
    assert task.run_count == 3
    states = client(lambda c: c.read_task_run_states(task.id))
    names = [s.name for s in states]
    assert names.count("AwaitingRetry") == 2
    assert "Retrying" in names


def test_flow_retries_rerun_the_flow(run_flow, client):
    out = run_flow(
        """
        import json
        from pathlib import Path
        from prefect import flow

        marker = Path("attempted")

        @flow(retries=1, retry_delay_seconds=0)
        def once_flaky():
            if not marker.exists():
                marker.write_text("1")
                raise RuntimeError("first attempt fails")
            return "ok"

        state = once_flaky(return_state=True)
        print(json.dumps({"result": state.result(), "flow_run_id": str(state.state_details.flow_run_id)}))
        """
    )
    assert out["result"] == "ok"
    run = client(lambda c: c.read_flow_run(UUID(out["flow_run_id"])))
    assert run.state.type.value == "COMPLETED"
    assert run.run_count == 2


def test_a_failing_flow_ends_failed_with_its_error(run_flow, client):
    out = run_flow(
        """
        import json
        from prefect import flow

        @flow
        def broken():
            raise ValueError("the answer is not 41")

        state = broken(return_state=True)
        print(json.dumps({"flow_run_id": str(state.state_details.flow_run_id)}))
        """
    )
    run = client(lambda c: c.read_flow_run(UUID(out["flow_run_id"])))
    assert run.state.type.value == "FAILED"
    assert "the answer is not 41" in run.state.message


def test_subflows_link_to_their_parent_task_run(run_flow, client):
    out = run_flow(
        """
        import json
        from prefect import flow

        @flow
        def child(x):
            return x * 2

        @flow
        def parent():
            return child(21)

        state = parent(return_state=True)
        print(json.dumps({"result": state.result(), "flow_run_id": str(state.state_details.flow_run_id)}))
        """
    )
    assert out["result"] == 42
    (dummy,) = task_runs_of(client, out["flow_run_id"])
    assert dummy.state.type.value == "COMPLETED"
    children = client(
        lambda c: c.read_flow_runs(flow_run_filter=FlowRunFilter(parent_task_run_id={"any_": [dummy.id]}))
    )
    assert len(children) == 1
    assert children[0].parent_task_run_id == dummy.id
    assert children[0].state.type.value == "COMPLETED"
    assert dummy.state.state_details.child_flow_run_id == children[0].id


def test_cached_tasks_and_persisted_results(run_flow, client):
    out = run_flow(
        """
        import json
        from prefect import flow, task
        from prefect.tasks import task_input_hash

        @task(cache_key_fn=task_input_hash, persist_result=True)
        def expensive(x):
            return {"value": x * 10}

        @flow(persist_result=True)
        def cached(x: int):
            return expensive(x)

        first = cached(4, return_state=True)
        second = cached(4, return_state=True)
        print(json.dumps({
            "results": [first.result(), second.result()],
            "runs": [str(first.state_details.flow_run_id), str(second.state_details.flow_run_id)],
        }))
        """
    )
    assert out["results"] == [{"value": 40}, {"value": 40}]
    (first,) = task_runs_of(client, out["runs"][0])
    (second,) = task_runs_of(client, out["runs"][1])
    assert first.state.name == "Completed"
    assert second.state.name == "Cached"
    assert second.state.type.value == "COMPLETED"
    assert first.state.data is not None  # a persisted result reference


def test_tag_concurrency_limits_serialise_submitted_tasks(run_flow, client):
    tag = f"db-{uuid4().hex[:8]}"
    client(lambda c: c.create_concurrency_limit(tag=tag, concurrency_limit=1))
    out = run_flow(
        f"""
        import json, time
        from prefect import flow, task

        @task(tags=["{tag}"])
        def hold(i):
            start = time.time()
            time.sleep(0.5)
            return [start, time.time()]

        @flow
        def limited():
            futures = [hold.submit(i) for i in range(3)]
            return [f.result() for f in futures]

        state = limited(return_state=True)
        print(json.dumps({{"spans": state.result(), "flow_run_id": str(state.state_details.flow_run_id)}}))
        """
    )
    spans = sorted(out["spans"])
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end - 0.05, f"tasks overlapped: {spans}"
    limit = client(lambda c: c.read_concurrency_limit_by_tag(tag))
    assert limit.active_slots == []


def test_logs_are_read_back(run_flow, client):
    marker = uuid4().hex
    out = run_flow(
        f"""
        import json
        from prefect import flow, task, get_run_logger

        @task
        def noisy():
            get_run_logger().warning("task says {marker}")

        @flow
        def logging_flow():
            get_run_logger().info("flow says {marker}")
            noisy()

        state = logging_flow(return_state=True)
        print(json.dumps({{"flow_run_id": str(state.state_details.flow_run_id)}}))
        """
    )
    run_id = UUID(out["flow_run_id"])
    logs = client(lambda c: c.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))))
    flow_line = next(l for l in logs if l.message == f"flow says {marker}")
    task_line = next(l for l in logs if l.message == f"task says {marker}")
    assert flow_line.level == 20 and flow_line.task_run_id is None
    assert task_line.level == 30 and task_line.task_run_id is not None


def test_reads_filters_sorting_paging_and_counts(run_flow, client):
    tag = f"batch-{uuid4().hex[:8]}"
    run_flow(
        f"""
        import json
        from prefect import flow, tags, task

        @task
        def one():
            return 1

        @flow(name="reader-flow")
        def reader(i: int):
            return one()

        with tags("{tag}"):
            for i in range(4):
                reader(i)
        print(json.dumps({{}}))
        """
    )
    by_tag = FlowRunFilter(tags=FlowRunFilterTags(all_=[tag]))
    runs = client(lambda c: c.read_flow_runs(flow_run_filter=by_tag, sort=FlowRunSort.START_TIME_ASC))
    assert [r.parameters["i"] for r in runs] == [0, 1, 2, 3]
    page = client(
        lambda c: c.read_flow_runs(flow_run_filter=by_tag, sort=FlowRunSort.START_TIME_DESC, limit=2, offset=1)
    )
    assert [r.parameters["i"] for r in page] == [2, 1]
    # The 2.20 client has no count methods; it counts through its own HTTP client.
    async def count(c, path, body):
        response = await c._client.post(path, json=body)
        return response.json()

    assert client(lambda c: count(c, "/flow_runs/count", {"flow_runs": by_tag.dict(json_compatible=True)})) == 4
    flow = client(lambda c: c.read_flow_by_name("reader-flow"))
    assert flow.name == "reader-flow"
    flows = client(lambda c: c.read_flows())
    assert "reader-flow" in [f.name for f in flows]
    task_filter = TaskRunFilter(name=TaskRunFilterName(like_="one"))
    body = {"flow_runs": by_tag.dict(json_compatible=True), "task_runs": task_filter.dict(json_compatible=True)}
    assert client(lambda c: count(c, "/task_runs/count", body)) == 4


def test_cancelling_a_scheduled_run_cancels_it(client):
    from prefect import flow
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelling, Scheduled

    @flow(name="to-cancel")
    def to_cancel():
        pass

    async def create_and_cancel(c):
        run = await c.create_flow_run(to_cancel, state=Scheduled())
        result = await c.set_flow_run_state(run.id, Cancelling())
        return run.id, result

    run_id, result = client(create_and_cancel)
    # A scheduled run has no infrastructure to stop: it is cancelled at once.
    assert result.state.type == StateType.CANCELLED
    run = client(lambda c: c.read_flow_run(run_id))
    assert run.state.type == StateType.CANCELLED


def test_missing_objects_raise_object_not_found(client):
    with pytest.raises(ObjectNotFound):
        client(lambda c: c.read_flow_run(uuid4()))
    with pytest.raises(PrefectHTTPStatusError) as err:
        client(lambda c: c.read_flow_by_name("no-such-flow"))
    assert err.value.response.status_code == 404
