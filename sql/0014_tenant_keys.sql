-- Each tenant's data keys (AES-256), stored only wrapped by the key-encryption
-- key (Vault transit, or the local key file): app.crypto. One key per tenant is
-- current (retired_at IS NULL); retired keys stay to open what they encrypted.
-- `binding` is HMAC-SHA256(key, tenant id ‖ key id), checked after each unwrap,
-- so a wrapped key copied into another tenant's row, or under another id, is refused.

CREATE TABLE tenant_key (
    tenant_id    uuid NOT NULL REFERENCES tenant (id),
    id           uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    wrapped      bytea NOT NULL CHECK (length(wrapped) BETWEEN 16 AND 4096),
    binding      bytea NOT NULL CHECK (length(binding) = 32),
    kek_provider text NOT NULL CHECK (kek_provider IN ('vault-transit', 'local-file')),
    kek_version  integer NOT NULL CHECK (kek_version > 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    rewrapped_at timestamptz,
    retired_at   timestamptz,
    UNIQUE (tenant_id, id)
);
-- Two first uses at once cannot both make a current key: the second insert conflicts here.
CREATE UNIQUE INDEX tenant_key_current ON tenant_key (tenant_id) WHERE retired_at IS NULL;

SELECT isolate_by_tenant('tenant_key');

-- The app reads its tenant's keys and adds the first one. Rewrapping (key
-- rotation) is the administrator's: `exceptao keys rotate`. Nobody deletes a
-- key: the files it encrypted would be lost.
GRANT SELECT, INSERT ON tenant_key TO exceptao_app;

-- TOTP secrets move from the application key to the tenant's data key. The
-- column names the data key that sealed the secret; NULL means the
-- application key (sealed before this migration), resealed when next used.
ALTER TABLE app_user ADD COLUMN totp_key_id uuid;
ALTER TABLE app_user ADD CONSTRAINT app_user_totp_key
    FOREIGN KEY (tenant_id, totp_key_id) REFERENCES tenant_key (tenant_id, id);
