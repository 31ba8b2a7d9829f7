-- A poll reads a queue's due runs off the first index: Scheduled runs that no poll has on
-- offer. Runs handed out move to the second, keyed by when their offer ends, so a poll
-- finds the offers that have ended at once and never walks past the live ones (with both
-- in one index, polls walked past thousands of runs handed out but not yet Pending: a
-- 50 ms poll). The busy count of a limited queue or pool reads live offers off it too.
-- From here on a state change ends an offer by clearing it (a Late mark excepted), so
-- `offered_until` alone says whether a run is on offer; offers that a state change ended
-- before now are cleared here. (A server still on the code before this, during a rolling
-- deploy, leaves an offer standing after a state change: the run waits out its 3 s.)
UPDATE flow_run SET offered_state_id = NULL, offered_until = NULL
WHERE offered_until IS NOT NULL
  AND (offered_until < now() OR (offered_state_id IS DISTINCT FROM state_id AND state_name IS DISTINCT FROM 'Late'));
CREATE INDEX ix_flow_run__work_queue_id_due ON flow_run (workspace_id, work_queue_id, next_scheduled_start_time, id)
    WHERE state_type = 'SCHEDULED' AND offered_until IS NULL;
CREATE INDEX ix_flow_run__work_queue_id_offered ON flow_run (workspace_id, work_queue_id, offered_until)
    WHERE state_type = 'SCHEDULED' AND offered_until IS NOT NULL;
DROP INDEX ix_flow_run__work_queue_id_scheduled;
