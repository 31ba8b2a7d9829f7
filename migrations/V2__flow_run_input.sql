-- Keyed inputs of a flow run (`/flow_runs/{id}/input`), used by pause/resume with run input.
CREATE TABLE flow_run_input (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created timestamptz NOT NULL DEFAULT now(),
    updated timestamptz NOT NULL DEFAULT now(),
    flow_run_id uuid NOT NULL REFERENCES flow_run (id) ON DELETE CASCADE,
    key text NOT NULL,
    value text NOT NULL,
    sender text,
    CONSTRAINT uq_flow_run_input__flow_run_id_key UNIQUE (flow_run_id, key)
);
