-- The runs list of one flow or one deployment, newest expected start first (the client's
-- and the UI's order, `EXPECTED_START_TIME_DESC` with the id as tiebreaker), comes straight
-- off these indexes, a page at a time, rather than from every run of the flow sorted.
-- They cover what the indexes on flow_id and deployment_id alone did (lookups, cascades),
-- so those go: writes pay for no extra index.
CREATE INDEX ix_flow_run__flow_id_expected_start_time ON flow_run (flow_id, expected_start_time DESC, id);
DROP INDEX ix_flow_run__flow_id;
CREATE INDEX ix_flow_run__deployment_id_expected_start_time ON flow_run (deployment_id, expected_start_time DESC, id);
DROP INDEX ix_flow_run__deployment_id;
