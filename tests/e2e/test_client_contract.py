"""Behaviours Prefect 2.20's own client tests depend on (tests/test_deployments.py,
tests/client/test_prefect_client.py and tests/test_task_server.py of PrefectHQ/prefect at
2.20.25), checked with the stock client the way those tests use it."""

import pytest

from conftest import EXTERNAL_API_URL, FlowScripts, _server

FLOW_SOURCE = """
from prefect import flow

@flow
def greet(name: str = "world"):
    return f"hello {name}"
"""


@pytest.fixture
def fresh_stratus():
    """A server of its own: `default-agent-pool` does not exist yet."""
    if EXTERNAL_API_URL:
        pytest.skip("needs a Stratus server of its own")
    yield from _server({})


def test_deployment_apply_sets_the_default_queue_concurrency_on_a_fresh_server(fresh_stratus, tmp_path):
    # `apply(work_queue_concurrency=...)` creates the `default` queue (Prefect creates
    # default-agent-pool and answers with its default queue), then limits it.
    (tmp_path / "greet_flow.py").write_text(FLOW_SOURCE)
    out = FlowScripts(fresh_stratus.url, tmp_path).run(
        """
        import asyncio, json
        from prefect import get_client
        from prefect.deployments import Deployment
        from greet_flow import greet

        deployment = Deployment.build_from_flow(flow=greet, name="limited", work_queue_name="default")
        deployment.apply(work_queue_concurrency=3)

        async def read():
            async with get_client() as client:
                return await client.read_work_queue_by_name("default")

        queue = asyncio.run(read())
        print(json.dumps({"limit": queue.concurrency_limit, "pool": queue.work_pool_id is not None}))
        """
    )
    assert out == {"limit": 3, "pool": True}


def test_update_deployment_with_no_schedule_removes_it(run_flow):
    out = run_flow(
        """
        import asyncio, json
        from datetime import timedelta
        from prefect import flow, get_client
        from prefect.client.schemas.schedules import IntervalSchedule, NoSchedule

        @flow
        def foo():
            pass

        async def main():
            async with get_client() as client:
                flow_id = await client.create_flow(foo)
                deployment_id = await client.create_deployment(
                    flow_id=flow_id, name="unscheduled", schedule=IntervalSchedule(interval=timedelta(days=1))
                )
                before = await client.read_deployment(deployment_id)
                await client.update_deployment(before, schedule=NoSchedule(), is_schedule_active=False)
                after = await client.read_deployment(deployment_id)
                return {
                    "before": [before.schedule is not None, before.is_schedule_active],
                    "after": [after.schedule is None, after.is_schedule_active, len(after.schedules)],
                }

        print(json.dumps(asyncio.run(main())))
        """
    )
    assert out == {"before": [True, True], "after": [True, False, 0]}


def test_a_cached_task_submitted_twice_to_a_task_server_is_cached(scripts):
    out = scripts.run(
        """
        import asyncio, json, os, uuid
        os.environ["PREFECT_EXPERIMENTAL_ENABLE_TASK_SCHEDULING"] = "true"
        from prefect import get_client, task
        from prefect.task_server import TaskServer
        from prefect.tasks import task_input_hash

        count = 0

        @task(cache_key_fn=task_input_hash)
        async def task_with_cache(x):
            global count
            count += 1
            return count

        async def tick():
            # The 2.20 client hands the end of a task server's run back to this loop
            # without waking it (against Prefect's own server too); pytest's loop wakes
            # often, a plain script's must be made to.
            while True:
                await asyncio.sleep(0.2)

        async def main():
            ticker = asyncio.create_task(tick())
            server = TaskServer(task_with_cache)
            x = uuid.uuid4().hex  # a key no earlier run has cached
            first = await task_with_cache.submit(x)
            await server.execute_task_run(first)
            second = await task_with_cache.submit(x)
            await server.execute_task_run(second)
            async with get_client() as client:
                runs = [await client.read_task_run(r.id) for r in (first, second)]
                results = [await r.state.result(fetch=True) for r in runs]
            ticker.cancel()
            return {"states": [r.state.name for r in runs], "results": results, "count": count}

        print(json.dumps(asyncio.run(main())))
        """
    )
    assert out == {"states": ["Completed", "Cached"], "results": [1, 1], "count": 1}
