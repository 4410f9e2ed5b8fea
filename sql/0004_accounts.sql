-- Sign-in: credentials on the user, server-side sessions, second factors,
-- password resets, and the counters behind rate limits.

ALTER TABLE app_user
    ADD COLUMN signins          integer NOT NULL DEFAULT 0,      -- completed sign-ins
    ADD COLUMN totp_secret      bytea,                           -- AES-GCM, never in clear
    ADD COLUMN totp_last_step   bigint,                          -- a code is never accepted twice
    ADD COLUMN totp_enrolled_at timestamptz,
    ADD COLUMN webauthn_user_id bytea NOT NULL DEFAULT uuid_send(gen_random_uuid());  -- WebAuthn user handle, no PII

-- A session is a row: revocable, listed, timed out by the server. The cookie
-- carries a random token; only its SHA-256 is stored. `stage` is 'password'
-- while a second factor is still owed, 'full' once signed in.
CREATE TABLE user_session (
    tenant_id    uuid NOT NULL REFERENCES tenant (id),
    id           uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES app_user (id) ON DELETE CASCADE,
    token_hash   bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    stage        text NOT NULL CHECK (stage IN ('password', 'full')),
    methods      text[] NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,                            -- absolute timeout
    factor_at    timestamptz,                                     -- last second factor, for step-up
    revoked_at   timestamptz
);
CREATE INDEX user_session_user ON user_session (tenant_id, user_id) WHERE revoked_at IS NULL;

CREATE TABLE recovery_code (
    tenant_id  uuid NOT NULL REFERENCES tenant (id),
    user_id    uuid NOT NULL REFERENCES app_user (id) ON DELETE CASCADE,
    code_hash  bytea NOT NULL CHECK (length(code_hash) = 32),
    used_at    timestamptz,
    PRIMARY KEY (user_id, code_hash)
);

CREATE TABLE webauthn_credential (
    tenant_id     uuid NOT NULL REFERENCES tenant (id),
    id            uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES app_user (id) ON DELETE CASCADE,
    credential_id bytea NOT NULL,
    credential    bytea NOT NULL,           -- fido2 AttestedCredentialData: id and public key
    sign_count    bigint NOT NULL DEFAULT 0,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    UNIQUE (tenant_id, credential_id)
);

CREATE TABLE password_reset (
    tenant_id  uuid NOT NULL REFERENCES tenant (id),
    token_hash bytea NOT NULL PRIMARY KEY CHECK (length(token_hash) = 32),
    user_id    uuid NOT NULL REFERENCES app_user (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['user_session', 'recovery_code', 'webauthn_credential', 'password_reset'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = app_current_tenant())'
                       ' WITH CHECK (tenant_id = app_current_tenant())', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO exceptao_app', t);
        EXECUTE format('GRANT SELECT ON %I TO exceptao_operator', t);
    END LOOP;
END
$$;

-- Failed sign-ins per account name (tenant and email, HMAC-keyed), kept the
-- same way whether or not such a user exists, so the delay and the lock tell
-- nobody which addresses have accounts. Not tenant data, as rate_limit below.
CREATE TABLE signin_guard (
    bucket     bytea PRIMARY KEY CHECK (length(bucket) = 32),
    failures   integer NOT NULL,
    not_before timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE, DELETE ON signin_guard TO exceptao_app;

-- Rate-limit counters: fixed windows keyed by an HMAC of what is counted
-- (an account, a client address), so no address is stored in clear. Not tenant
-- data: a client address is limited across tenants.
CREATE TABLE rate_limit (
    bucket       bytea PRIMARY KEY CHECK (length(bucket) = 32),
    window_start timestamptz NOT NULL,
    hits         integer NOT NULL
);
GRANT SELECT, INSERT, UPDATE, DELETE ON rate_limit TO exceptao_app;
