"""Small read-back helpers shared by the end-to-end tests (stock client methods only)."""

from uuid import UUID

from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId


def uid(value) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


def task_runs_of(client, flow_run_id):
    """The task runs of one flow run, through `read_task_runs` with a flow-run filter."""
    flow_runs = FlowRunFilter(id=FlowRunFilterId(any_=[uid(flow_run_id)]))
    return client(lambda c: c.read_task_runs(flow_run_filter=flow_runs))


def flow_run_states(client, flow_run_id):
    states = client(lambda c: c.read_flow_run_states(uid(flow_run_id)))
    return sorted(states, key=lambda s: s.timestamp)


def task_run_states(client, task_run_id):
    states = client(lambda c: c.read_task_run_states(uid(task_run_id)))
    return sorted(states, key=lambda s: s.timestamp)


def names(states):
    return [s.name for s in states]


def types(states):
    return [s.type.value for s in states]
