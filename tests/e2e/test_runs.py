"""Local flow runs (`python flow.py`) with tasks, retries, failures, subflows and caching."""

from datetime import timedelta
from uuid import UUID, uuid4

from _support import flow_run_states, names, task_run_states, task_runs_of, types


def test_tasks_return_values_and_runs_are_recorded(run_flow, client):
    out = run_flow(
        """
        import json
        from prefect import flow, task

        @task
        def add(a, b):
            return a + b

        @flow(name="adder")
        def adder(x: int):
            first = add.submit(x, 1)
            # A future passed on is recorded as the second task's upstream input.
            second = add.submit(first, 10)
            return add(second, 100)

        state = adder(5, return_state=True)
        print(json.dumps({"result": state.result(), "flow_run_id": str(state.state_details.flow_run_id)}))
        """
    )
    assert out["result"] == 116
    run_id = UUID(out["flow_run_id"])

    run = client(lambda c: c.read_flow_run(run_id))
    flow = client(lambda c: c.read_flow_by_name("adder"))
    assert run.id == run_id
    assert run.flow_id == flow.id
    assert run.state.type.value == "COMPLETED" and run.state.name == "Completed"
    assert run.state_type.value == "COMPLETED" and run.state_name == "Completed"
    assert run.run_count == 1
    assert run.parameters == {"x": 5}
    assert run.start_time is not None and run.end_time is not None
    assert run.start_time <= run.end_time
    assert run.expected_start_time is not None
    assert run.total_run_time > timedelta(0)
    assert names(flow_run_states(client, run_id)) == ["Pending", "Running", "Completed"]

    tasks = sorted(task_runs_of(client, run_id), key=lambda t: int(t.dynamic_key))
    assert [t.name for t in tasks] == ["add-0", "add-1", "add-2"]
    assert [t.dynamic_key for t in tasks] == ["0", "1", "2"]
    assert len({t.task_key for t in tasks}) == 1 and tasks[0].task_key.startswith("add-")
    for t in tasks:
        assert t.flow_run_id == run_id
        assert t.state.type.value == "COMPLETED" and t.state.name == "Completed"
        assert t.run_count == 1
        assert t.start_time is not None and t.end_time is not None
        assert names(task_run_states(client, t.id)) == ["Pending", "Running", "Completed"]
    assert [i.id for i in tasks[1].task_inputs["a"]] == [tasks[0].id]
    assert [i.id for i in tasks[2].task_inputs["a"]] == [tasks[1].id]
    assert tasks[0].task_inputs["a"] == [] and tasks[0].task_inputs["b"] == []

    again = client(lambda c: c.read_task_run(tasks[1].id))
    assert (again.id, again.name, again.flow_run_id) == (tasks[1].id, "add-1", run_id)


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
    assert task.empirical_policy.retries == 3
    states = task_run_states(client, task.id)
    assert names(states) == [
        "Pending",
        "Running",
        "AwaitingRetry",
        "Retrying",
        "AwaitingRetry",
        "Retrying",
        "Completed",
    ]
    assert types(states) == ["PENDING", "RUNNING", "SCHEDULED", "RUNNING", "SCHEDULED", "RUNNING", "COMPLETED"]
    # The AwaitingRetry state carries the rejected failure's message.
    assert "attempt 1 failed" in states[2].message
    assert "attempt 2 failed" in states[4].message
    assert states[2].state_details.scheduled_time is not None


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
    assert run.empirical_policy.retries == 1
    states = flow_run_states(client, run.id)
    assert types(states) == ["PENDING", "RUNNING", "SCHEDULED", "RUNNING", "COMPLETED"]
    assert states[2].name == "AwaitingRetry"
    assert "first attempt fails" in states[2].message


def test_a_failing_flow_ends_failed_with_its_error(run_flow, client):
    out = run_flow(
        """
        import json
        from prefect import flow, task

        @task
        def explode():
            raise KeyError("no such key 17")

        @flow
        def broken():
            explode(return_state=True)
            raise ValueError("the answer is not 41")

        state = broken(return_state=True)
        print(json.dumps({"failed": state.is_failed(), "flow_run_id": str(state.state_details.flow_run_id)}))
        """
    )
    assert out["failed"] is True
    run = client(lambda c: c.read_flow_run(UUID(out["flow_run_id"])))
    assert run.state.type.value == "FAILED" and run.state.name == "Failed"
    assert "the answer is not 41" in run.state.message
    assert run.end_time is not None
    assert names(flow_run_states(client, run.id)) == ["Pending", "Running", "Failed"]
    (task,) = task_runs_of(client, run.id)
    assert task.state.type.value == "FAILED"
    assert "no such key 17" in task.state.message


def test_subflows_link_to_their_parent_task_run(run_flow, client):
    out = run_flow(
        """
        import json
        from prefect import flow, task

        @task
        def double(x):
            return x * 2

        @flow(name="child")
        def child(x):
            return double(x)

        @flow(name="parent")
        def parent():
            return child(21)

        state = parent(return_state=True)
        print(json.dumps({"result": state.result(), "flow_run_id": str(state.state_details.flow_run_id)}))
        """
    )
    assert out["result"] == 42
    parent_id = UUID(out["flow_run_id"])
    (dummy,) = task_runs_of(client, parent_id)
    assert dummy.task_key.startswith("child-")
    # The server mirrors the child's states onto the parent's "dummy" task run.
    assert dummy.state.type.value == "COMPLETED"
    assert "RUNNING" in types(task_run_states(client, dummy.id))

    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentTaskRunId

    children = client(
        lambda c: c.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_task_run_id=FlowRunFilterParentTaskRunId(any_=[dummy.id]))
        )
    )
    assert len(children) == 1
    child = children[0]
    assert child.id != parent_id
    assert child.parent_task_run_id == dummy.id
    assert child.state.type.value == "COMPLETED"
    assert dummy.state.state_details.child_flow_run_id == child.id
    assert client(lambda c: c.read_flow(child.flow_id)).name == "child"
    (inner,) = task_runs_of(client, child.id)
    assert inner.name == "double-0" and inner.state.type.value == "COMPLETED"


def test_cached_tasks_and_persisted_results(run_flow, client):
    salt = uuid4().hex  # cache keys must be new even against a long-lived server
    out = run_flow(
        f"""
        import json
        from pathlib import Path
        from prefect import flow, task
        from prefect.tasks import task_input_hash

        calls = Path("calls")

        @task(cache_key_fn=task_input_hash, persist_result=True)
        def expensive(x, salt):
            calls.write_text(str(int(calls.read_text() if calls.exists() else 0) + 1))
            return {{"value": x * 10}}

        @flow(persist_result=True)
        def cached(x: int):
            return expensive(x, "{salt}")

        states = [cached(4, return_state=True), cached(4, return_state=True), cached(5, return_state=True)]
        print(json.dumps({{
            "results": [s.result() for s in states],
            "runs": [str(s.state_details.flow_run_id) for s in states],
            "calls": int(calls.read_text()),
        }}))
        """
    )
    assert out["results"] == [{"value": 40}, {"value": 40}, {"value": 50}]
    # The second run got the first run's result from the server's cache: no execution.
    assert out["calls"] == 2
    (first,) = task_runs_of(client, out["runs"][0])
    (second,) = task_runs_of(client, out["runs"][1])
    (third,) = task_runs_of(client, out["runs"][2])
    assert first.state.name == "Completed"
    assert second.state.name == "Cached" and second.state.type.value == "COMPLETED"
    assert third.state.name == "Completed"
    key = first.state.state_details.cache_key
    assert key and second.state.state_details.cache_key == key
    assert third.state.state_details.cache_key not in (None, key)
    assert first.state.state_details.cache_expiration is None
    # The client parses a persisted "reference" result document into a PersistedResult.
    assert first.state.data.type == "reference" and first.state.data.storage_block_id is not None
    assert second.state.data.storage_key == first.state.data.storage_key

    # A new process (with another PREFECT_HOME) reads the persisted results back with
    # `state.result()`: it finds the storage block through the API.
    readback = run_flow(
        f"""
        import asyncio, json
        from uuid import UUID, uuid4
        from prefect.client.orchestration import get_client

        async def main():
            async with get_client() as c:
                results = []
                for id in {[str(first.id), str(second.id), str(third.id)]!r}:
                    run = await c.read_task_run(UUID(id))
                    results.append(await run.state.result(fetch=True))
                flow_run = await c.read_flow_run(UUID({out["runs"][0]!r}))
                results.append(await flow_run.state.result(fetch=True))
                return results

        print(json.dumps({{"results": asyncio.run(main())}}))
        """
    )
    assert readback["results"] == [{"value": 40}, {"value": 40}, {"value": 50}, {"value": 40}]


def test_flow_retry_reuses_persisted_work(run_flow, client):
    out = run_flow(
        """
        import json
        from pathlib import Path
        from prefect import flow, task

        def bump(name):
            p = Path(name)
            p.write_text(str(int(p.read_text()) + 1 if p.exists() else 1))

        @task(persist_result=True)
        def kept(x):
            bump("kept")
            return x + 1

        @task(persist_result=False)
        def redone(x):
            bump("redone")
            return x + 2

        @flow(name="retried-child", persist_result=True)
        def child(x):
            bump("child")
            return x * 3

        @flow(retries=1, retry_delay_seconds=0)
        def retried_parent():
            results = [kept(1), redone(1), child(1)]
            if not Path("failed-once").exists():
                Path("failed-once").write_text("x")
                raise RuntimeError("fail once")
            return results

        state = retried_parent(return_state=True)
        print(json.dumps({
            "result": state.result(),
            "flow_run_id": str(state.state_details.flow_run_id),
            "calls": {n: int(Path(n).read_text()) for n in ["kept", "redone", "child"]},
        }))
        """
    )
    assert out["result"] == [2, 3, 3]
    # On the retry the server rejects re-running the persisted task ("already completed")
    # and the client finds the completed subflow through /flow_runs/filter; only the
    # unpersisted task runs again.
    assert out["calls"] == {"kept": 1, "redone": 2, "child": 1}
    run = client(lambda c: c.read_flow_run(UUID(out["flow_run_id"])))
    assert run.state.type.value == "COMPLETED" and run.run_count == 2
    tasks = task_runs_of(client, run.id)
    assert len(tasks) == 3
    (kept,) = [t for t in tasks if t.task_key.startswith("kept-")]
    (redone,) = [t for t in tasks if t.task_key.startswith("redone-")]
    (dummy,) = [t for t in tasks if t.task_key.startswith("child-")]
    assert names(task_run_states(client, kept.id)) == ["Pending", "Running", "Completed"]
    assert kept.flow_run_run_count == 1
    assert names(task_run_states(client, redone.id)) == ["Pending", "Running", "Completed", "Retrying", "Completed"]
    assert redone.flow_run_run_count == 2
    assert dummy.state.type.value == "COMPLETED"
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentTaskRunId

    children = client(
        lambda c: c.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_task_run_id=FlowRunFilterParentTaskRunId(any_=[dummy.id]))
        )
    )
    assert len(children) == 1 and children[0].run_count == 1
