-- Every row of a user's work belongs to one workspace, and a request sees only its own.
--
-- Requests run as this database's tenant role (`stratus_tenant_role()`) with the setting
-- `stratus.workspace` naming their workspace (`store::tenancy` sets both when a connection
-- leaves the pool). Row level security then scopes every statement, and fills
-- `workspace_id` on every insert: a query that forgets its workspace cannot exist, since
-- none spells it. A connection with no workspace set sees no rows and can insert none
-- (fails closed). Cross-workspace work (migrations, the scheduler's list of workspaces,
-- key checks) runs as the owner, whom row security does not bind (the tables do not FORCE
-- it). Foreign keys between work tables include the workspace: a row can only point at a
-- row of its own workspace (Postgres checks keys without row security).

CREATE FUNCTION stratus_workspace() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$ SELECT nullif(current_setting('stratus.workspace', true), '')::uuid $$;

-- Roles belong to the whole cluster, which other databases (other Stratus installs) may
-- share: each database gets a tenant role of its own, named after it, so that no other
-- database's owner is a member of it. Every migration run (`db::migrate`) calls
-- `stratus_ensure_tenant_role()` again, so that a copy of the database (a restore into
-- another cluster, a clone used by another user) gets the role back.
DO $$
BEGIN
    EXECUTE format(
        'CREATE FUNCTION stratus_tenant_role() RETURNS text LANGUAGE sql IMMUTABLE AS %L',
        format('SELECT %L::text', 'stratus_tenant_' || left(md5(current_database()), 16)));
END $$;

CREATE FUNCTION stratus_ensure_tenant_role() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    role text := stratus_tenant_role();
BEGIN
    BEGIN
        EXECUTE format('CREATE ROLE %I NOLOGIN', role);
    EXCEPTION
        WHEN duplicate_object OR unique_violation THEN NULL;
    END;
    -- Postgres 16 makes a role's creator a member that may not SET it: say so.
    IF current_setting('server_version_num')::int >= 160000 THEN
        IF NOT pg_has_role(current_user, role, 'SET') THEN
            EXECUTE format('GRANT %I TO %I WITH SET TRUE', role, current_user);
        END IF;
    ELSIF NOT pg_has_role(current_user, role, 'MEMBER') THEN
        EXECUTE format('GRANT %I TO %I', role, current_user);
    END IF;
END $$;

SELECT stratus_ensure_tenant_role();

-- Before Postgres 15 everyone may create objects in `public`: not the tenant role (a
-- function it made could be called by the owner's work).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

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

-- Keys between work tables include the workspace, so a request cannot point a row at
-- another workspace's (keys are checked without row security). Keys that set NULL on
-- delete stay on the id alone: `SET NULL (column)` needs Postgres 15; rows of another
-- workspace they might name stay invisible all the same.
DO $$
DECLARE
    fk record;
    parent text;
BEGIN
    CREATE TEMP TABLE scoped_key ON COMMIT DROP AS
        SELECT c.conname, c.conrelid::regclass::text AS child, c.confrelid::regclass::text AS parent,
               a.attname AS col, c.confdeltype, c.condeferrable, c.condeferred
        FROM pg_constraint c
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
        JOIN pg_policies p ON p.tablename = c.conrelid::regclass::text AND p.policyname = 'workspace_isolation'
        JOIN pg_policies q ON q.tablename = c.confrelid::regclass::text AND q.policyname = 'workspace_isolation'
        WHERE c.contype = 'f' AND array_length(c.conkey, 1) = 1 AND c.confdeltype IN ('a', 'r', 'c');
    FOR parent IN SELECT DISTINCT k.parent FROM scoped_key k LOOP
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I UNIQUE (workspace_id, id)',
                       parent, 'uq_' || parent || '__workspace_id_id');
    END LOOP;
    FOR fk IN SELECT * FROM scoped_key LOOP
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', fk.child, fk.conname);
        EXECUTE format(
            'ALTER TABLE %I ADD CONSTRAINT %I FOREIGN KEY (workspace_id, %I) REFERENCES %I (workspace_id, id) ON DELETE %s%s',
            fk.child, fk.conname, fk.col, fk.parent,
            CASE fk.confdeltype WHEN 'c' THEN 'CASCADE' WHEN 'r' THEN 'RESTRICT' ELSE 'NO ACTION' END,
            CASE WHEN fk.condeferred THEN ' DEFERRABLE INITIALLY DEFERRED'
                 WHEN fk.condeferrable THEN ' DEFERRABLE' ELSE '' END);
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

-- The tenant role works with the rows of the tables row security scopes, and reads the
-- schema's version; nothing else (not who may sign in, not the schema). TRUNCATE would
-- pass row security by, so it is not granted. Later migrations grant their new tables
-- themselves (a test checks that every table the role may write has row security).
DO $$
DECLARE
    role text := stratus_tenant_role();
    t record;
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', role);
    FOR t IN SELECT tablename FROM pg_policies WHERE schemaname = 'public' AND policyname = 'workspace_isolation' LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO %I', t.tablename, role);
    END LOOP;
    IF to_regclass('refinery_schema_history') IS NOT NULL THEN
        EXECUTE format('GRANT SELECT ON refinery_schema_history TO %I', role);
    END IF;
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO %I', role);
END $$;
