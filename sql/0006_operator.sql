-- The operator panel: platform operators, their sessions, and the last chain
-- verification of each tenant. Operator data is platform data, not tenant
-- data: only exceptao_operator may touch it, never the app role, so a flaw in
-- a tenant's pages cannot read or forge an operator's credentials.

-- Operators always have TOTP: the secret is required, AES-GCM sealed with the
-- application key and bound to the operator's id (app.operator.accounts).
-- Accounts are made by `exceptao operator add` (administrator connection):
-- the operator role itself cannot create operators.
CREATE TABLE operator_account (
    id             uuid PRIMARY KEY,
    email          text NOT NULL CHECK (email ~ '^[^@\s]+@[^@\s]+$' AND length(email) <= 254),
    display_name   text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    password_hash  text NOT NULL,
    totp_secret    bytea NOT NULL,
    totp_last_step bigint,                       -- a code is never accepted twice
    created_at     timestamptz NOT NULL DEFAULT now(),
    disabled_at    timestamptz
);
CREATE UNIQUE INDEX operator_account_email ON operator_account (lower(email));

-- As user_session: the cookie holds a random token, the row only its SHA-256.
CREATE TABLE operator_session (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    operator_id  uuid NOT NULL REFERENCES operator_account (id),
    token_hash   bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,                   -- absolute timeout
    revoked_at   timestamptz,
    CHECK (expires_at > created_at)
);
CREATE INDEX operator_session_operator ON operator_session (operator_id) WHERE revoked_at IS NULL;

-- The last verification of each tenant's chain from the panel. It names a
-- tenant, so it has forced RLS like any tenant table; only the operator role
-- (BYPASSRLS) is granted it.
CREATE TABLE tenant_chain_status (
    tenant_id  uuid PRIMARY KEY REFERENCES tenant (id),
    checked_at timestamptz NOT NULL DEFAULT now(),
    checked_by uuid NOT NULL REFERENCES operator_account (id),
    ok         boolean NOT NULL,
    total_rows bigint NOT NULL CHECK (total_rows >= 0),
    broken_at  bigint,
    detail     text CHECK (length(detail) <= 200),
    CHECK (ok = (broken_at IS NULL))
);
SELECT isolate_by_tenant('tenant_chain_status');

GRANT SELECT, UPDATE (totp_last_step, password_hash) ON operator_account TO exceptao_operator;
GRANT SELECT, INSERT, UPDATE (last_seen_at, revoked_at) ON operator_session TO exceptao_operator;
GRANT SELECT, INSERT, UPDATE ON tenant_chain_status TO exceptao_operator;

-- Sign-in to the panel is throttled with the same counters as tenant sign-in
-- (app.accounts.throttle; keyed by HMAC, buckets named for the operator door).
GRANT SELECT, INSERT, UPDATE, DELETE ON rate_limit, signin_guard TO exceptao_operator;

-- Suspending a tenant ends its users' sessions.
GRANT UPDATE (revoked_at) ON user_session TO exceptao_operator;

-- Operators' actions (create, suspend, restore) join the affected tenant's chain.
GRANT EXECUTE ON FUNCTION audit_append(text, text, text, text, jsonb, jsonb, bytea) TO exceptao_operator;
