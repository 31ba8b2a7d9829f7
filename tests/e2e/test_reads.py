"""Reads, filters, sorting, paging and counts; errors as the client sees them."""

from uuid import uuid4

import pytest
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
    TaskRunFilter,
    TaskRunFilterName,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.states import Running


async def _post(c, path, body):
    """The 2.20 client has no count methods; count through its own HTTP client."""
    response = await c._client.post(path, json=body)
    return response.json()


def test_reads_filters_sorting_paging_and_counts(run_flow, client):
    tag = f"batch-{uuid4().hex[:8]}"
    flow_name = f"reader-{tag}"
    run_flow(
        f"""
        import json
        from prefect import flow, tags, task

        @task
        def one():
            return 1

        @flow(name="{flow_name}")
        def reader(i: int):
            one()
            if i == 3:
                raise RuntimeError("i is 3")
            return i

        with tags("{tag}"):
            states = [reader(i, return_state=True) for i in range(4)]
        print(json.dumps({{"types": [s.type.value for s in states]}}))
        """
    )
    by_tag = FlowRunFilter(tags=FlowRunFilterTags(all_=[tag]))
    runs = client(lambda c: c.read_flow_runs(flow_run_filter=by_tag, sort=FlowRunSort.START_TIME_ASC))
    assert [r.parameters["i"] for r in runs] == [0, 1, 2, 3]
    assert all(tag in r.tags for r in runs)
    by_expected = client(lambda c: c.read_flow_runs(flow_run_filter=by_tag, sort=FlowRunSort.EXPECTED_START_TIME_ASC))
    assert [r.parameters["i"] for r in by_expected] == [0, 1, 2, 3]
    page = client(
        lambda c: c.read_flow_runs(flow_run_filter=by_tag, sort=FlowRunSort.START_TIME_DESC, limit=2, offset=1)
    )
    assert [r.parameters["i"] for r in page] == [2, 1]

    def of_type(t):
        return FlowRunFilter(tags=by_tag.tags, state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[t])))

    completed = client(lambda c: c.read_flow_runs(flow_run_filter=of_type(StateType.COMPLETED)))
    assert sorted(r.parameters["i"] for r in completed) == [0, 1, 2]
    failed = client(lambda c: c.read_flow_runs(flow_run_filter=of_type(StateType.FAILED)))
    assert [r.parameters["i"] for r in failed] == [3]

    flow = client(lambda c: c.read_flow_by_name(flow_name))
    assert flow.name == flow_name and all(r.flow_id == flow.id for r in runs)
    flows = client(lambda c: c.read_flows(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name]))))
    assert [f.id for f in flows] == [flow.id]
    assert flow_name in [f.name for f in client(lambda c: c.read_flows())]
    of_flow = client(lambda c: c.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name]))))
    assert len(of_flow) == 4

    by_tag_body = by_tag.dict(json_compatible=True)
    assert client(lambda c: _post(c, "/flow_runs/count", {"flow_runs": by_tag_body})) == 4
    failed_body = of_type(StateType.FAILED).dict(json_compatible=True)
    assert client(lambda c: _post(c, "/flow_runs/count", {"flow_runs": failed_body})) == 1
    assert client(lambda c: _post(c, "/flows/count", {"flows": {"name": {"any_": [flow_name]}}})) == 1

    tasks = client(lambda c: c.read_task_runs(flow_run_filter=by_tag))
    assert len(tasks) == 4 and {t.flow_run_id for t in tasks} == {r.id for r in runs}
    task_filter = TaskRunFilter(name=TaskRunFilterName(like_="one"))
    body = {"flow_runs": by_tag_body, "task_runs": task_filter.dict(json_compatible=True)}
    assert client(lambda c: _post(c, "/task_runs/count", body)) == 4
    paged = client(lambda c: c.read_task_runs(flow_run_filter=by_tag, limit=3))
    assert len(paged) == 3


def test_missing_objects_raise_object_not_found(client):
    with pytest.raises(ObjectNotFound):
        client(lambda c: c.read_flow_run(uuid4()))
    with pytest.raises(PrefectHTTPStatusError) as err:  # read_task_run does not map 404
        client(lambda c: c.read_task_run(uuid4()))
    assert err.value.response.status_code == 404
    with pytest.raises(ObjectNotFound):
        client(lambda c: c.set_flow_run_state(uuid4(), Running()))
    with pytest.raises(ObjectNotFound):
        client(lambda c: c.read_concurrency_limit_by_tag(f"no-such-tag-{uuid4().hex}"))
    with pytest.raises(PrefectHTTPStatusError) as err:
        client(lambda c: c.read_flow_by_name(f"no-such-flow-{uuid4().hex}"))
    assert err.value.response.status_code == 404
    assert err.value.response.json() == {"detail": "Flow not found"}


def test_invalid_requests_are_rejected_with_422(client):
    async def post(c, path, body):
        with pytest.raises(PrefectHTTPStatusError) as err:
            await c._client.post(path, json=body)
        return err.value.response.status_code, err.value.response.json()

    status, body = client(lambda c: post(c, "/flow_runs/filter", {"limit": 201}))
    assert status == 422
    assert body["detail"] == "Invalid limit: must be less than or equal to 200."
    # Filters reject unknown keys.
    status, body = client(lambda c: post(c, "/flow_runs/filter", {"flow_runs": {"no_such_field": {}}}))
    assert status == 422
    assert body["exception_message"] == "Invalid request received."
