-- Stratus schema, part 1: flows, runs, states, logs, blocks, tag concurrency limits, artifacts.
-- Columns follow the Prefect 2.20 Postgres schema (reference section 7) where clients can see them.

CREATE TABLE flow (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created timestamptz NOT NULL DEFAULT now(),
    updated timestamptz NOT NULL DEFAULT now(),
    name text NOT NULL,
    tags jsonb NOT NULL DEFAULT '[]',
    CONSTRAINT uq_flow__name UNIQUE (name)
);
CREATE INDEX ix_flow__updated ON flow (updated);
CREATE INDEX ix_flow__created ON flow (created);

CREATE TABLE flow_run (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created timestamptz NOT NULL DEFAULT now(),
    updated timestamptz NOT NULL DEFAULT now(),
    name text NOT NULL,
    flow_id uuid NOT NULL REFERENCES flow (id) ON DELETE CASCADE,
    deployment_id uuid,
    deployment_version text,
    flow_version text,
    work_queue_name text,
    work_queue_id uuid,
    parent_task_run_id uuid,
    infrastructure_document_id uuid,
    infrastructure_pid text,
    parameters jsonb NOT NULL DEFAULT '{}',
    idempotency_key text,
    context jsonb NOT NULL DEFAULT '{}',
    empirical_policy jsonb NOT NULL DEFAULT '{}',
    tags jsonb NOT NULL DEFAULT '[]',
    created_by jsonb,
    job_variables jsonb DEFAULT '{}',
    auto_scheduled boolean NOT NULL DEFAULT false,
    state_id uuid,
    state_type text,
    state_name text,
    state_timestamp timestamptz,
    run_count integer NOT NULL DEFAULT 0,
    expected_start_time timestamptz,
    next_scheduled_start_time timestamptz,
    start_time timestamptz,
    end_time timestamptz,
    total_run_time interval NOT NULL DEFAULT '0',
    CONSTRAINT uq_flow_run__flow_id_idempotency_key UNIQUE (flow_id, idempotency_key)
);
CREATE INDEX ix_flow_run__updated ON flow_run (updated);
CREATE INDEX ix_flow_run__flow_id ON flow_run (flow_id);
CREATE INDEX ix_flow_run__name ON flow_run (name);
CREATE INDEX ix_flow_run__state_type ON flow_run (state_type);
CREATE INDEX ix_flow_run__state_name ON flow_run (state_name);
CREATE INDEX ix_flow_run__state_timestamp ON flow_run (state_timestamp);
CREATE INDEX ix_flow_run__deployment_id ON flow_run (deployment_id);
CREATE INDEX ix_flow_run__work_queue_id ON flow_run (work_queue_id);
CREATE INDEX ix_flow_run__work_queue_name ON flow_run (work_queue_name);
CREATE INDEX ix_flow_run__parent_task_run_id ON flow_run (parent_task_run_id);
CREATE INDEX ix_flow_run__next_scheduled_start_time_asc ON flow_run (next_scheduled_start_time ASC);
CREATE INDEX ix_flow_run__expected_start_time_desc ON flow_run (expected_start_time DESC);
CREATE INDEX ix_flow_run__end_time_desc ON flow_run (end_time DESC);
CREATE INDEX ix_flow_run__coalesce_start_time_expected_start_time
    ON flow_run ((coalesce(start_time, expected_start_time)));
CREATE INDEX ix_flow_run__tags ON flow_run USING gin (tags jsonb_path_ops);

CREATE TABLE flow_run_state (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created timestamptz NOT NULL DEFAULT now(),
    updated timestamptz NOT NULL DEFAULT now(),
    flow_run_id uuid NOT NULL REFERENCES flow_run (id) ON DELETE CASCADE,
    type text NOT NULL CHECK (type IN ('SCHEDULED','PENDING','RUNNING','COMPLETED','FAILED','CANCELLED','CRASHED','PAUSED','CANCELLING')),
    timestamp timestamptz NOT NULL,
    name text NOT NULL,
    message text,
    state_details jsonb NOT NULL DEFAULT '{}',
    data jsonb,
    result_artifact_id uuid,
    CONSTRAINT uq_flow_run_state__flow_run_id_timestamp_desc UNIQUE (flow_run_id, timestamp)
);
CREATE INDEX ix_flow_run_state__name ON flow_run_state (name);

CREATE TABLE task_run (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created timestamptz NOT NULL DEFAULT now(),
    updated timestamptz NOT NULL DEFAULT now(),
    name text NOT NULL,
    flow_run_id uuid REFERENCES flow_run (id) ON DELETE CASCADE,
    task_key text NOT NULL,
    dynamic_key text NOT NULL,
    cache_key text,
    cache_expiration timestamptz,
    task_version text,
    flow_run_run_count integer NOT NULL DEFAULT 0,
    empirical_policy jsonb NOT NULL DEFAULT '{}',
    task_inputs jsonb NOT NULL DEFAULT '{}',
    tags jsonb NOT NULL DEFAULT '[]',
    state_id uuid,
    state_type text,
    state_name text,
    state_timestamp timestamptz,
    run_count integer NOT NULL DEFAULT 0,
    expected_start_time timestamptz,
    next_scheduled_start_time timestamptz,
    start_time timestamptz,
    end_time timestamptz,
    total_run_time interval NOT NULL DEFAULT '0',
    CONSTRAINT uq_task_run__flow_run_id_task_key_dynamic_key UNIQUE (flow_run_id, task_key, dynamic_key)
);
CREATE INDEX ix_task_run__updated ON task_run (updated);
CREATE INDEX ix_task_run__flow_run_id ON task_run (flow_run_id);
CREATE INDEX ix_task_run__name ON task_run (name);
CREATE INDEX ix_task_run__state_type ON task_run (state_type);
CREATE INDEX ix_task_run__state_name ON task_run (state_name);
CREATE INDEX ix_task_run__expected_start_time_desc ON task_run (expected_start_time DESC);
CREATE INDEX ix_task_run__next_scheduled_start_time_asc ON task_run (next_scheduled_start_time ASC);
CREATE INDEX ix_task_run__end_time_desc ON task_run (end_time DESC);
CREATE INDEX ix_task_run__start_time ON task_run (start_time);
CREATE INDEX ix_task_run__tags ON task_run USING gin (tags jsonb_path_ops);

ALTER TABLE flow_run
    ADD CONSTRAINT fk_flow_run__parent_task_run_id__task_run
    FOREIGN KEY (parent_task_run_id) REFERENCES task_run (id) ON DELETE SET NULL;

CREATE TABLE task_run_state (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created timestamptz NOT NULL DEFAULT now(),
    updated timestamptz NOT NULL DEFAULT now(),
    task_run_id uuid NOT NULL REFERENCES task_run (id) ON DELETE CASCADE,
    type text NOT NULL CHECK (type IN ('SCHEDULED','PENDING','RUNNING','COMPLETED','FAILED','CANCELLED','CRASHED','PAUSED','CANCELLING')),
    timestamp timestamptz NOT NULL,
    name text NOT NULL,
    message text,
    state_details jsonb NOT NULL DEFAULT '{}',
    data jsonb,
    result_artifact_id uuid,
    CONSTRAINT uq_task_run_state__task_run_id_timestamp_desc UNIQUE (task_run_id, timestamp)
);
CREATE INDEX ix_task_run_state__name ON task_run_state (name);

CREATE TABLE task_run_state_cache (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created timestamptz NOT NULL DEFAULT now(),
    updated timestamptz NOT NULL DEFAULT now(),
    cache_key text NOT NULL,
    cache_expiration timestamptz,
    task_run_state_id uuid NOT NULL
);
CREATE INDEX ix_task_run_state_cache__cache_key_created_desc ON task_run_state_cache (cache_key, created DESC);

CREATE TABLE log (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created timestamptz NOT NULL DEFAULT now(),
    updated timestamptz NOT NULL DEFAULT now(),
    name text NOT NULL,
    level smallint NOT NULL,
    flow_run_id uuid,
    task_run_id uuid,
    message text NOT NULL,
    timestamp timestamptz NOT NULL
);
CREATE INDEX ix_log__flow_run_id_timestamp ON log (flow_run_id, timestamp);
CREATE INDEX ix_log__task_run_id ON log (task_run_id);
CREATE INDEX ix_log__timestamp ON log (timestamp);
CREATE INDEX ix_log__level ON log (level);

CREATE TABLE artifact (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created timestamptz NOT NULL DEFAULT now(),
    updated timestamptz NOT NULL DEFAULT now(),
    key text,
    type text,
    data jsonb,
    description text,
    metadata_ jsonb,
    task_run_id uuid,
    flow_run_id uuid
);
CREATE INDEX ix_artifact__key ON artifact (key);
CREATE INDEX ix_artifact__flow_run_id ON artifact (flow_run_id);
CREATE INDEX ix_artifact__task_run_id ON artifact (task_run_id);

CREATE TABLE artifact_collection (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created timestamptz NOT NULL DEFAULT now(),
    updated timestamptz NOT NULL DEFAULT now(),
    key text NOT NULL,
    latest_id uuid NOT NULL,
    task_run_id uuid,
    flow_run_id uuid,
    type text,
    data jsonb,
    description text,
    metadata_ jsonb,
    CONSTRAINT uq_artifact_collection__key UNIQUE (key)
);

CREATE TABLE concurrency_limit (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created timestamptz NOT NULL DEFAULT now(),
    updated timestamptz NOT NULL DEFAULT now(),
    tag text NOT NULL,
    concurrency_limit integer NOT NULL,
    active_slots jsonb NOT NULL DEFAULT '[]',
    CONSTRAINT uq_concurrency_limit__tag UNIQUE (tag)
);

CREATE TABLE block_type (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created timestamptz NOT NULL DEFAULT now(),
    updated timestamptz NOT NULL DEFAULT now(),
    name text NOT NULL,
    slug text NOT NULL,
    logo_url text,
    documentation_url text,
    description text,
    code_example text,
    is_protected boolean NOT NULL DEFAULT false,
    CONSTRAINT uq_block_type__slug UNIQUE (slug)
);
CREATE UNIQUE INDEX uq_block_type__name ON block_type (name);

CREATE TABLE block_schema (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created timestamptz NOT NULL DEFAULT now(),
    updated timestamptz NOT NULL DEFAULT now(),
    checksum text NOT NULL,
    fields jsonb NOT NULL DEFAULT '{}',
    capabilities jsonb NOT NULL DEFAULT '[]',
    version text NOT NULL DEFAULT 'non-versioned',
    block_type_id uuid NOT NULL REFERENCES block_type (id) ON DELETE CASCADE,
    CONSTRAINT uq_block_schema__checksum_version UNIQUE (checksum, version)
);
CREATE INDEX ix_block_schema__block_type_id ON block_schema (block_type_id);

CREATE TABLE block_schema_reference (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created timestamptz NOT NULL DEFAULT now(),
    updated timestamptz NOT NULL DEFAULT now(),
    name text NOT NULL,
    parent_block_schema_id uuid NOT NULL REFERENCES block_schema (id) ON DELETE CASCADE,
    reference_block_schema_id uuid NOT NULL REFERENCES block_schema (id) ON DELETE CASCADE
);

CREATE TABLE block_document (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created timestamptz NOT NULL DEFAULT now(),
    updated timestamptz NOT NULL DEFAULT now(),
    name text NOT NULL,
    data jsonb NOT NULL DEFAULT '{}',
    is_anonymous boolean NOT NULL DEFAULT false,
    block_type_name text,
    block_type_id uuid NOT NULL REFERENCES block_type (id) ON DELETE CASCADE,
    block_schema_id uuid NOT NULL REFERENCES block_schema (id) ON DELETE CASCADE,
    CONSTRAINT uq_block_document__block_type_id_name UNIQUE (block_type_id, name)
);
CREATE INDEX ix_block_document__is_anonymous ON block_document (is_anonymous);
CREATE INDEX ix_block_document__name ON block_document (name);

CREATE TABLE block_document_reference (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created timestamptz NOT NULL DEFAULT now(),
    updated timestamptz NOT NULL DEFAULT now(),
    name text NOT NULL,
    parent_block_document_id uuid NOT NULL REFERENCES block_document (id) ON DELETE CASCADE,
    reference_block_document_id uuid NOT NULL REFERENCES block_document (id) ON DELETE CASCADE
);

CREATE TABLE configuration (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created timestamptz NOT NULL DEFAULT now(),
    updated timestamptz NOT NULL DEFAULT now(),
    key text NOT NULL UNIQUE,
    value jsonb NOT NULL
);
