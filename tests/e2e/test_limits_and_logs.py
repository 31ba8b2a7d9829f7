"""Tag concurrency limits (v1) and run logs, as the stock client uses them."""

from uuid import UUID, uuid4

from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId, LogFilterLevel, LogFilterTaskRunId

from _support import task_runs_of


def test_tag_concurrency_limits_serialise_submitted_tasks(run_flow, client):
    tag = f"db-{uuid4().hex[:8]}"
    created = client(lambda c: c.create_concurrency_limit(tag=tag, concurrency_limit=1))
    limit = client(lambda c: c.read_concurrency_limit_by_tag(tag))
    assert limit.id == created
    assert (limit.tag, limit.concurrency_limit, limit.active_slots) == (tag, 1, [])

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
    assert len(spans) == 3
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end - 0.05, f"tasks tagged {tag!r} (limit 1) overlapped: {spans}"
    tasks = task_runs_of(client, out["flow_run_id"])
    assert len(tasks) == 3
    assert all(t.state.type.value == "COMPLETED" and tag in t.tags for t in tasks)
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
    (task,) = task_runs_of(client, run_id)
    by_run = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))
    logs = client(lambda c: c.read_logs(log_filter=by_run))
    messages = [l.message for l in logs]
    assert f"flow says {marker}" in messages and f"task says {marker}" in messages
    assert all(l.flow_run_id == run_id for l in logs)
    # Default sort is TIMESTAMP_ASC.
    assert [l.timestamp for l in logs] == sorted(l.timestamp for l in logs)
    assert messages.index(f"flow says {marker}") < messages.index(f"task says {marker}")

    flow_line = next(l for l in logs if l.message == f"flow says {marker}")
    task_line = next(l for l in logs if l.message == f"task says {marker}")
    assert (flow_line.level, flow_line.task_run_id, flow_line.name) == (20, None, "prefect.flow_runs")
    assert (task_line.level, task_line.task_run_id, task_line.name) == (30, task.id, "prefect.task_runs")

    warnings = client(
        lambda c: c.read_logs(log_filter=LogFilter(flow_run_id=by_run.flow_run_id, level=LogFilterLevel(ge_=30)))
    )
    assert [l.message for l in warnings] == [f"task says {marker}"]
    of_task = client(lambda c: c.read_logs(log_filter=LogFilter(task_run_id=LogFilterTaskRunId(any_=[task.id]))))
    assert f"task says {marker}" in [l.message for l in of_task]
    assert all(l.task_run_id == task.id for l in of_task)
    page = client(lambda c: c.read_logs(log_filter=by_run, limit=1, offset=1))
    assert len(page) == 1 and page[0].timestamp == logs[1].timestamp
    rest = client(lambda c: c.read_logs(log_filter=by_run, offset=1))
    assert len(rest) == len(logs) - 1
