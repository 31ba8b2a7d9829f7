-- Stratus schema, part 2: work pools with their queues and workers, legacy agents,
-- deployments with schedules, variables and saved searches (reference section 7).

CREATE TABLE work_pool (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created timestamptz NOT NULL DEFAULT now(),
    updated timestamptz NOT NULL DEFAULT now(),
    name text NOT NULL,
    description text,
    type text NOT NULL DEFAULT 'prefect-agent',
    base_job_template jsonb NOT NULL DEFAULT '{}',
    is_paused boolean NOT NULL DEFAULT false,
    default_queue_id uuid,
    concurrency_limit integer,
    status text CHECK (status IN ('READY', 'NOT_READY', 'PAUSED')),
    last_transitioned_status_at timestamptz,
    CONSTRAINT uq_work_pool__name UNIQUE (name)
);
CREATE INDEX ix_work_pool__updated ON work_pool (updated);

CREATE TABLE work_queue (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created timestamptz NOT NULL DEFAULT now(),
    updated timestamptz NOT NULL DEFAULT now(),
    name text NOT NULL,
    filter jsonb,
    description text NOT NULL DEFAULT '',
    is_paused boolean NOT NULL DEFAULT false,
    concurrency_limit integer,
    priority integer NOT NULL DEFAULT 1 CHECK (priority >= 1),
    last_polled timestamptz,
    status text NOT NULL DEFAULT 'NOT_READY' CHECK (status IN ('READY', 'NOT_READY', 'PAUSED')),
    work_pool_id uuid NOT NULL REFERENCES work_pool (id) ON DELETE CASCADE,
    CONSTRAINT uq_work_queue__work_pool_id_name UNIQUE (work_pool_id, name)
);
CREATE INDEX ix_work_queue__work_pool_id_priority ON work_queue (work_pool_id, priority);

-- The default queue cannot be deleted while it is the default.
ALTER TABLE work_pool
    ADD CONSTRAINT fk_work_pool__default_queue_id__work_queue
    FOREIGN KEY (default_queue_id) REFERENCES work_queue (id) ON DELETE RESTRICT DEFERRABLE INITIALLY DEFERRED;

ALTER TABLE flow_run
    ADD CONSTRAINT fk_flow_run__work_queue_id__work_queue
    FOREIGN KEY (work_queue_id) REFERENCES work_queue (id) ON DELETE SET NULL;

CREATE TABLE worker (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created timestamptz NOT NULL DEFAULT now(),
    updated timestamptz NOT NULL DEFAULT now(),
    name text NOT NULL,
    last_heartbeat_time timestamptz NOT NULL DEFAULT now(),
    heartbeat_interval_seconds integer,
    status text NOT NULL DEFAULT 'OFFLINE' CHECK (status IN ('ONLINE', 'OFFLINE')),
    work_pool_id uuid NOT NULL REFERENCES work_pool (id) ON DELETE CASCADE,
    CONSTRAINT uq_worker__work_pool_id_name UNIQUE (work_pool_id, name)
);
CREATE INDEX ix_worker__last_heartbeat_time ON worker (last_heartbeat_time);

CREATE TABLE agent (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created timestamptz NOT NULL DEFAULT now(),
    updated timestamptz NOT NULL DEFAULT now(),
    name text NOT NULL,
    last_activity_time timestamptz NOT NULL DEFAULT now(),
    work_queue_id uuid NOT NULL REFERENCES work_queue (id) ON DELETE CASCADE,
    CONSTRAINT uq_agent__name UNIQUE (name)
);

CREATE TABLE deployment (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created timestamptz NOT NULL DEFAULT now(),
    updated timestamptz NOT NULL DEFAULT now(),
    name text NOT NULL,
    version text,
    description text,
    flow_id uuid NOT NULL REFERENCES flow (id) ON DELETE CASCADE,
    work_queue_name text,
    work_queue_id uuid REFERENCES work_queue (id) ON DELETE SET NULL,
    infra_overrides jsonb NOT NULL DEFAULT '{}',
    path text,
    entrypoint text,
    manifest_path text,
    parameter_openapi_schema jsonb,
    parameters jsonb NOT NULL DEFAULT '{}',
    pull_steps jsonb,
    tags jsonb NOT NULL DEFAULT '[]',
    paused boolean NOT NULL DEFAULT false,
    is_schedule_active boolean NOT NULL DEFAULT true,
    enforce_parameter_schema boolean NOT NULL DEFAULT false,
    storage_document_id uuid REFERENCES block_document (id) ON DELETE CASCADE,
    infrastructure_document_id uuid REFERENCES block_document (id) ON DELETE CASCADE,
    created_by jsonb,
    updated_by jsonb,
    last_polled timestamptz,
    status text NOT NULL DEFAULT 'NOT_READY' CHECK (status IN ('READY', 'NOT_READY')),
    CONSTRAINT uq_deployment__flow_id_name UNIQUE (flow_id, name)
);
CREATE INDEX ix_deployment__updated ON deployment (updated);
CREATE INDEX ix_deployment__paused ON deployment (paused);
CREATE INDEX ix_deployment__work_queue_id ON deployment (work_queue_id);

CREATE TABLE deployment_schedule (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created timestamptz NOT NULL DEFAULT now(),
    updated timestamptz NOT NULL DEFAULT now(),
    deployment_id uuid NOT NULL REFERENCES deployment (id) ON DELETE CASCADE,
    schedule jsonb NOT NULL,
    active boolean NOT NULL DEFAULT true,
    max_active_runs integer,
    max_scheduled_runs integer,
    catchup boolean NOT NULL DEFAULT false
);
CREATE INDEX ix_deployment_schedule__deployment_id ON deployment_schedule (deployment_id);

CREATE TABLE variable (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created timestamptz NOT NULL DEFAULT now(),
    updated timestamptz NOT NULL DEFAULT now(),
    name text NOT NULL,
    value text NOT NULL,
    tags jsonb NOT NULL DEFAULT '[]',
    CONSTRAINT uq_variable__name UNIQUE (name)
);

CREATE TABLE saved_search (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created timestamptz NOT NULL DEFAULT now(),
    updated timestamptz NOT NULL DEFAULT now(),
    name text NOT NULL,
    filters jsonb NOT NULL DEFAULT '[]',
    CONSTRAINT uq_saved_search__name UNIQUE (name)
);
