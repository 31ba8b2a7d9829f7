-- Which Stratus agent claimed a flow run, and when that agent last said it still runs it.
-- Prefect 2 cannot tell a run whose worker died from one still running: such runs stay
-- Running for ever. An agent names the runs it executes in each heartbeat; the upkeep
-- pass marks a claimed run Crashed once its agent has not named it for three of its
-- heartbeat intervals (the time after which Prefect shows a worker offline).
CREATE TABLE flow_run_claim (
    flow_run_id UUID PRIMARY KEY REFERENCES flow_run (id) ON DELETE CASCADE,
    work_pool_id UUID NOT NULL REFERENCES work_pool (id) ON DELETE CASCADE,
    worker_name TEXT NOT NULL,
    claimed TIMESTAMPTZ NOT NULL DEFAULT now(),
    seen TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX ix_flow_run_claim__seen ON flow_run_claim (seen);
CREATE INDEX ix_flow_run_claim__work_pool_id_worker_name ON flow_run_claim (work_pool_id, worker_name);
