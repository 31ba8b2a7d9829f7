-- Stratus schema, part 3: the transactional outbox and the Postgres-backed message queue.

-- A message that must reach a work pool's queue. Written in the same transaction as the
-- state change that makes a run due; published after commit, or by the scheduler's sweep
-- if that failed or the run is due more than the queue's maximum delay ahead.
CREATE TABLE outbox (
    id bigserial PRIMARY KEY,
    created timestamptz NOT NULL DEFAULT now(),
    work_pool_id uuid NOT NULL REFERENCES work_pool (id) ON DELETE CASCADE,
    flow_run_id uuid NOT NULL REFERENCES flow_run (id) ON DELETE CASCADE,
    -- When the run is due; the message goes out at most the queue's maximum delay before.
    due timestamptz NOT NULL,
    body jsonb NOT NULL,
    published timestamptz,
    attempts integer NOT NULL DEFAULT 0,
    last_error text
);
CREATE INDEX ix_outbox__due_unpublished ON outbox (due) WHERE published IS NULL;
CREATE INDEX ix_outbox__flow_run_id ON outbox (flow_run_id);
CREATE INDEX ix_outbox__published ON outbox (published) WHERE published IS NOT NULL;

-- The queue interface served from Postgres when no SQS endpoint is configured: one
-- logical queue per work pool, with SQS's semantics (delay, visibility timeout,
-- at-least-once delivery, receipts).
CREATE TABLE queue_message (
    id bigserial PRIMARY KEY,
    created timestamptz NOT NULL DEFAULT now(),
    queue text NOT NULL,
    body jsonb NOT NULL,
    visible_at timestamptz NOT NULL DEFAULT now(),
    receive_count integer NOT NULL DEFAULT 0,
    receipt uuid
);
CREATE INDEX ix_queue_message__queue_visible_at ON queue_message (queue, visible_at);
CREATE UNIQUE INDEX ix_queue_message__receipt ON queue_message (receipt);
CREATE INDEX ix_queue_message__created ON queue_message (created);
