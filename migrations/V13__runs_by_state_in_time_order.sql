-- The runs in one state, newest expected start first (the web UI's runs page filtered by
-- state, Prefect's UI lists of failed or late runs), come off this index in order: with the
-- index on the state alone, a page of Failed runs walked the time index past every run in
-- another state (130 ms at a million runs, the newest ones all Completed). It serves
-- lookups by state as the index it replaces did.
CREATE INDEX ix_flow_run__state_type_expected_start_time
    ON flow_run (workspace_id, state_type, expected_start_time DESC, id);
DROP INDEX ix_flow_run__state_type;
