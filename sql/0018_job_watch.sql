-- Never silent, continued (app/jobs/watch.py, app/jobs/alerts.py).
--
-- Two more alert kinds: a job with no run started for two rounds ('overdue',
-- once per episode, keyed by the last run before the gap) and that job running
-- again ('running_again', same key). streak_start holds that key for them.
ALTER TABLE job_alert DROP CONSTRAINT job_alert_kind_check;
ALTER TABLE job_alert ADD CONSTRAINT job_alert_kind_check
    CHECK (kind IN ('failed', 'recovered', 'overdue', 'running_again'));

-- An alert no operator received is retried, not lost: until sent_at is set,
-- the job-watch job sends it again at next_attempt_at (backoff after each
-- failure; a grace period after the claim, so a sender that died mid-send is
-- covered too). last_error holds the error's kind, never an address.
ALTER TABLE job_alert
    ADD COLUMN attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    ADD COLUMN next_attempt_at timestamptz,
    ADD COLUMN last_error text CHECK (length(last_error) <= 500);
UPDATE job_alert SET next_attempt_at = claimed_at WHERE sent_at IS NULL;
CREATE INDEX job_alert_unsent ON job_alert (next_attempt_at) WHERE sent_at IS NULL;

GRANT UPDATE (attempts, next_attempt_at, last_error) ON job_alert TO exceptao_app;
