-- Every row of a user's work belongs to one workspace, and a request sees only its own.
--
-- Requests run as the role `stratus_tenant` with the setting `stratus.workspace` naming
-- their workspace (`store::tenancy` sets both when a connection leaves the pool). Row
-- level security then scopes every statement, and fills `workspace_id` on every insert:
-- a query that forgets its workspace cannot exist, since none spells it. A connection
-- with no workspace set sees no rows and can insert none (fails closed). Cross-workspace
-- work (migrations, the scheduler's list of workspaces, key checks) runs as the owner,
-- whom row security does not bind (the tables do not FORCE it).

CREATE FUNCTION stratus_workspace() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$ SELECT nullif(current_setting('stratus.workspace', true), '')::uuid $$;

DO $$
BEGIN
    CREATE ROLE stratus_tenant NOLOGIN;
EXCEPTION
    -- Roles belong to the whole cluster: another database of it made it first.
    WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

DO $$
BEGIN
    IF NOT pg_has_role(current_user, 'stratus_tenant', 'MEMBER') THEN
        EXECUTE format('GRANT stratus_tenant TO %I', current_user);
    END IF;
END $$;

DO $$
DECLARE
    t text;
    r record;
    scoped text[] := ARRAY[
        'flow', 'flow_run', 'flow_run_state', 'flow_run_input', 'flow_run_claim',
        'task_run', 'task_run_state', 'task_run_state_cache', 'log',
        'artifact', 'artifact_collection',
        'concurrency_limit', 'concurrency_limit_v2',
        'block_type', 'block_schema', 'block_schema_reference',
        'block_document', 'block_document_reference',
        'configuration', 'work_pool', 'work_queue', 'worker', 'agent',
        'deployment', 'deployment_schedule', 'variable', 'saved_search',
        'outbox', 'queue_message',
        'flow_run_notification_policy', 'flow_run_notification_queue'
    ];
BEGIN
    FOREACH t IN ARRAY scoped LOOP
        -- Existing rows are the default workspace's (a constant default rewrites nothing).
        EXECUTE format(
            'ALTER TABLE %I ADD COLUMN workspace_id uuid NOT NULL DEFAULT %L',
            t, '00000000-0000-4000-8000-000000000002');
        EXECUTE format('ALTER TABLE %I ALTER COLUMN workspace_id SET DEFAULT stratus_workspace()', t);
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY workspace_isolation ON %I '
            'USING (workspace_id = stratus_workspace()) '
            'WITH CHECK (workspace_id = stratus_workspace())', t);
    END LOOP;

    -- Indexes lead with the workspace, so a workspace's lists and sorts read only its
    -- rows. Constraint indexes are left alone (ON CONFLICT names their columns; those
    -- that are global names are redone below), as are the GIN indexes and the message
    -- queue's (a queue is a pool's, whose id is unique anyway, and the notifier reads
    -- its queue across workspaces).
    FOR r IN
        SELECT i.indexname, i.indexdef FROM pg_indexes i
        WHERE i.schemaname = 'public' AND i.tablename = ANY (scoped)
          AND i.indexdef LIKE '% USING btree (%'
          AND i.tablename <> 'queue_message'
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)
    LOOP
        EXECUTE format('DROP INDEX %I', r.indexname);
        EXECUTE replace(r.indexdef, ' USING btree (', ' USING btree (workspace_id, ');
    END LOOP;
END $$;

-- Names are unique per workspace, not across them.
ALTER TABLE flow DROP CONSTRAINT uq_flow__name,
    ADD CONSTRAINT uq_flow__name UNIQUE (workspace_id, name);
ALTER TABLE artifact_collection DROP CONSTRAINT uq_artifact_collection__key,
    ADD CONSTRAINT uq_artifact_collection__key UNIQUE (workspace_id, key);
ALTER TABLE concurrency_limit DROP CONSTRAINT uq_concurrency_limit__tag,
    ADD CONSTRAINT uq_concurrency_limit__tag UNIQUE (workspace_id, tag);
ALTER TABLE concurrency_limit_v2 DROP CONSTRAINT uq_concurrency_limit_v2__name,
    ADD CONSTRAINT uq_concurrency_limit_v2__name UNIQUE (workspace_id, name);
ALTER TABLE block_type DROP CONSTRAINT uq_block_type__slug,
    ADD CONSTRAINT uq_block_type__slug UNIQUE (workspace_id, slug);
ALTER TABLE block_schema DROP CONSTRAINT uq_block_schema__checksum_version,
    ADD CONSTRAINT uq_block_schema__checksum_version UNIQUE (workspace_id, checksum, version);
ALTER TABLE configuration DROP CONSTRAINT configuration_key_key,
    ADD CONSTRAINT uq_configuration__key UNIQUE (workspace_id, key);
ALTER TABLE work_pool DROP CONSTRAINT uq_work_pool__name,
    ADD CONSTRAINT uq_work_pool__name UNIQUE (workspace_id, name);
ALTER TABLE agent DROP CONSTRAINT uq_agent__name,
    ADD CONSTRAINT uq_agent__name UNIQUE (workspace_id, name);
ALTER TABLE variable DROP CONSTRAINT uq_variable__name,
    ADD CONSTRAINT uq_variable__name UNIQUE (workspace_id, name);
ALTER TABLE saved_search DROP CONSTRAINT uq_saved_search__name,
    ADD CONSTRAINT uq_saved_search__name UNIQUE (workspace_id, name);

-- The tenant role works with rows, never with the schema, and never with who may sign
-- in: TRUNCATE would pass row security by, so it is not granted.
GRANT USAGE ON SCHEMA public TO stratus_tenant;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO stratus_tenant;
REVOKE ALL ON account, workspace, api_key, ui_session FROM stratus_tenant;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO stratus_tenant;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO stratus_tenant;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO stratus_tenant;
