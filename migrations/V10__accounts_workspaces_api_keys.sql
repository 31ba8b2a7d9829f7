-- Who may call a hosted Stratus: accounts hold workspaces, and API keys carry a role in one
-- workspace (or in every workspace of their account). A key is shown once, when created;
-- only its SHA-256 is kept (keys are 256 random bits, so a fast hash is enough: there is no
-- password to guess). The web UI's sessions are made by signing in with a key, and end when
-- it is revoked.
CREATE TABLE account (
    id UUID PRIMARY KEY,
    created TIMESTAMPTZ NOT NULL DEFAULT now(),
    name TEXT NOT NULL UNIQUE
);

CREATE TABLE workspace (
    id UUID PRIMARY KEY,
    created TIMESTAMPTZ NOT NULL DEFAULT now(),
    account_id UUID NOT NULL REFERENCES account (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    UNIQUE (account_id, name)
);

-- The zero-configuration server's account and workspace: plain `/api` serves it.
INSERT INTO account (id, name) VALUES ('00000000-0000-4000-8000-000000000001', 'default');
INSERT INTO workspace (id, account_id, name)
VALUES ('00000000-0000-4000-8000-000000000002', '00000000-0000-4000-8000-000000000001', 'default');

CREATE TABLE api_key (
    id UUID PRIMARY KEY,
    created TIMESTAMPTZ NOT NULL DEFAULT now(),
    name TEXT NOT NULL,
    -- The key's first characters, to tell keys apart in lists; never enough to use it.
    prefix TEXT NOT NULL,
    key_sha256 BYTEA NOT NULL UNIQUE,
    account_id UUID NOT NULL REFERENCES account (id) ON DELETE CASCADE,
    -- NULL: the key reaches every workspace of its account.
    workspace_id UUID REFERENCES workspace (id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('admin', 'developer', 'runner', 'viewer')),
    expires TIMESTAMPTZ,
    revoked TIMESTAMPTZ
);
CREATE INDEX ix_api_key__account_id ON api_key (account_id);

CREATE TABLE ui_session (
    id UUID PRIMARY KEY,
    created TIMESTAMPTZ NOT NULL DEFAULT now(),
    token_sha256 BYTEA NOT NULL UNIQUE,
    -- Sent back in every change the session's pages make (form field or header).
    csrf_token TEXT NOT NULL,
    api_key_id UUID NOT NULL REFERENCES api_key (id) ON DELETE CASCADE,
    expires TIMESTAMPTZ NOT NULL
);
CREATE INDEX ix_ui_session__api_key_id ON ui_session (api_key_id);
CREATE INDEX ix_ui_session__expires ON ui_session (expires);
