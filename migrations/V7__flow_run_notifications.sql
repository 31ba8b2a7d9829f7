-- Stratus schema, part 5: flow run notifications (Prefect's policies and queue).

-- Which flow run state changes to tell someone about, and through which notification block.
CREATE TABLE flow_run_notification_policy (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created timestamptz NOT NULL DEFAULT now(),
    updated timestamptz NOT NULL DEFAULT now(),
    is_active boolean NOT NULL DEFAULT true,
    -- Empty: every state. Matched by state name ("Late", "Completed", ...).
    state_names jsonb NOT NULL DEFAULT '[]',
    -- Empty: every run. Otherwise the run must carry one of them.
    tags jsonb NOT NULL DEFAULT '[]',
    message_template text,
    block_document_id uuid NOT NULL REFERENCES block_document (id) ON DELETE CASCADE
);
CREATE INDEX ix_flow_run_notification_policy__is_active ON flow_run_notification_policy (is_active);

-- A notification to send: written in the transaction that sets the state (the outbox of
-- the notifications queue), published to that queue after commit or by the scheduler's
-- sweep (which also publishes again what was published long ago and is still here), and
-- deleted by the notifier once it has been sent or given up. `attempts` counts sends.
CREATE TABLE flow_run_notification_queue (
    id bigserial PRIMARY KEY,
    created timestamptz NOT NULL DEFAULT now(),
    flow_run_notification_policy_id uuid NOT NULL
        REFERENCES flow_run_notification_policy (id) ON DELETE CASCADE,
    flow_run_state_id uuid NOT NULL REFERENCES flow_run_state (id) ON DELETE CASCADE,
    flow_run_id uuid NOT NULL,
    published timestamptz,
    attempts integer NOT NULL DEFAULT 0,
    last_error text
);
CREATE INDEX ix_flow_run_notification_queue__unpublished
    ON flow_run_notification_queue (created) WHERE published IS NULL;
CREATE INDEX ix_flow_run_notification_queue__flow_run_id_unpublished
    ON flow_run_notification_queue (flow_run_id) WHERE published IS NULL;
CREATE INDEX ix_flow_run_notification_queue__policy_id
    ON flow_run_notification_queue (flow_run_notification_policy_id);
CREATE INDEX ix_flow_run_notification_queue__created ON flow_run_notification_queue (created);
CREATE INDEX ix_flow_run_notification_queue__flow_run_state_id
    ON flow_run_notification_queue (flow_run_state_id);
