-- The task runs of one flow run in start order (a run's page, its graph, /task_runs/filter
-- by flow run sorted by expected start) come straight off this index, rather than from a
-- walk of every task run's expected_start_time or a sort. It covers what the index on
-- flow_run_id alone did, so that one goes: writes pay for no extra index.
CREATE INDEX ix_task_run__flow_run_id_expected_start_time ON task_run (flow_run_id, expected_start_time, id);
DROP INDEX ix_task_run__flow_run_id;
