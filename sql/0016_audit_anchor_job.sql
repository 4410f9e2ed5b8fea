-- The anchoring job (app/audit/anchor.py): each tenant's chain head, timestamped
-- by an RFC 3161 authority, is appended to audit_anchor by the app role.
--
-- kind 'anchor': seq and row_hash are the anchored head, tsa_token the
-- authority's TimeStampToken (DER) whose message imprint is row_hash (SHA-256).
-- kind 'chain_discontinuity': the last anchored row (seq, row_hash) is no longer
-- on the chain; detail says what was found there instead. No token.
ALTER TABLE audit_anchor
    ADD COLUMN kind text NOT NULL DEFAULT 'anchor' CHECK (kind IN ('anchor', 'chain_discontinuity')),
    ADD COLUMN detail jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(detail) = 'object'),
    ADD CONSTRAINT audit_anchor_token CHECK (kind = 'anchor' OR tsa_token IS NULL);
CREATE INDEX audit_anchor_latest ON audit_anchor (tenant_id, kind, anchored_at DESC);
GRANT INSERT ON audit_anchor TO exceptao_app;

-- Anchoring attempts that failed (authority down, bad answer), one row per
-- tenant while it keeps failing: the backoff and what went wrong, for the
-- health page. audit_anchor is append-only, so this state lives apart; the row
-- goes when an anchor succeeds.
CREATE TABLE audit_anchor_retry (
    tenant_id       uuid PRIMARY KEY REFERENCES tenant (id),
    attempts        integer NOT NULL CHECK (attempts >= 1),
    first_failed_at timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    last_error      text NOT NULL CHECK (length(last_error) <= 1000)
);
ALTER TABLE audit_anchor_retry ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_anchor_retry FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_anchor_retry
    USING (tenant_id = app_current_tenant())
    WITH CHECK (tenant_id = app_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON audit_anchor_retry TO exceptao_app;
GRANT SELECT ON audit_anchor_retry TO exceptao_operator;
