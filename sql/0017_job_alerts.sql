-- Never silent: a failing job mails the platform operators once per failure
-- streak, and once more when it next succeeds. One row per mail decided; the
-- primary key lets only one instance claim a mail, so two instances never
-- both send it. Platform data, as job_run: no tenant_id, no RLS.
CREATE TABLE job_alert (
    job          text NOT NULL CHECK (length(job) BETWEEN 1 AND 100),
    streak_start bigint NOT NULL REFERENCES job_run (id),   -- the streak's first failed run
    kind         text NOT NULL CHECK (kind IN ('failed', 'recovered')),
    run_id       bigint NOT NULL REFERENCES job_run (id),   -- the run that raised it
    claimed_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    sent_at      timestamptz,
    PRIMARY KEY (job, streak_start, kind)
);
-- The streak queries (app.jobs.alerts, app.jobs.health) look for a job's
-- last ok run and the failed runs after it after every run; job_run only grows.
CREATE INDEX job_run_by_outcome ON job_run (job, outcome, id);

GRANT SELECT, INSERT, UPDATE (sent_at) ON job_alert TO exceptao_app;
GRANT SELECT ON job_alert, job_run TO exceptao_operator;

-- Where alerts go: the enabled operators' addresses, and nothing else of
-- their accounts (the app role is never granted operator_account).
CREATE FUNCTION job_alert_recipients() RETURNS SETOF text
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    SELECT email FROM operator_account WHERE disabled_at IS NULL ORDER BY lower(email)
$$;
REVOKE ALL ON FUNCTION job_alert_recipients() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION job_alert_recipients() TO exceptao_app;
