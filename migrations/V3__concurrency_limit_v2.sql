-- Global concurrency limits (`/v2/concurrency_limits`), used by `prefect.concurrency`.
CREATE TABLE concurrency_limit_v2 (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created timestamptz NOT NULL DEFAULT now(),
    updated timestamptz NOT NULL DEFAULT now(),
    active boolean NOT NULL DEFAULT true,
    name text NOT NULL,
    "limit" integer NOT NULL,
    active_slots integer NOT NULL DEFAULT 0,
    denied_slots integer NOT NULL DEFAULT 0,
    slot_decay_per_second double precision NOT NULL DEFAULT 0,
    avg_slot_occupancy_seconds double precision NOT NULL DEFAULT 2.0,
    CONSTRAINT uq_concurrency_limit_v2__name UNIQUE (name)
);
