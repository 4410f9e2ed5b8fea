-- Background jobs: one row per run, so a failed or stuck run is on the record
-- (the admin health page reads it). Platform data: a run spans tenants, so no
-- tenant_id and no RLS.
CREATE TABLE job_run (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job         text NOT NULL CHECK (length(job) BETWEEN 1 AND 100),
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz,
    outcome     text NOT NULL DEFAULT 'running' CHECK (outcome IN ('running', 'ok', 'failed')),
    error       text,
    detail      jsonb NOT NULL DEFAULT '{}',
    CHECK ((outcome = 'running') = (finished_at IS NULL)),
    CHECK ((outcome = 'failed') = (error IS NOT NULL))
);
CREATE INDEX job_run_latest ON job_run (job, started_at DESC);
GRANT SELECT, INSERT, UPDATE ON job_run TO exceptao_app;
