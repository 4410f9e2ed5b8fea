-- Tenant exports (DPA 9.1): an administrator asks for one, the tenant-export
-- job (app/jobs/tenant_export.py) writes the archive (app/tenant_export),
-- encrypted with the tenant's data key, into object storage, and the screen
-- (/admin/export) polls its progress and offers the download until it expires.
--
-- state: queued -> running -> done | failed. progress is what the polling
-- fragment shows ({"step", "done", "total"}). object_key names the encrypted
-- archive in the object store; size and sha256 are of the archive itself (the
-- ZIP the administrator downloads), chain_seq and chain_hash the audit chain
-- head it holds. object_key goes back to NULL once the archive expired and
-- its object was deleted; the row stays as the record that it was made.
CREATE TABLE tenant_export (
    tenant_id    uuid NOT NULL REFERENCES tenant (id),
    id           uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    requested_by uuid NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    state        text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done', 'failed')),
    progress     jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(progress) = 'object'),
    started_at   timestamptz,
    object_key   text CHECK (length(object_key) BETWEEN 1 AND 512),
    size         bigint CHECK (size >= 0),
    sha256       bytea CHECK (length(sha256) = 32),
    chain_seq    bigint CHECK (chain_seq >= 0),
    chain_hash   bytea CHECK (length(chain_hash) = 32),
    error        text CHECK (length(error) BETWEEN 1 AND 1000),
    finished_at  timestamptz,
    expires_at   timestamptz,
    CHECK ((state IN ('done', 'failed')) = (finished_at IS NOT NULL)),
    CHECK ((state = 'failed') = (error IS NOT NULL)),
    CHECK (state <> 'done' OR (size IS NOT NULL AND sha256 IS NOT NULL AND expires_at IS NOT NULL)),
    CHECK (object_key IS NULL OR state = 'done'),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, requested_by) REFERENCES app_user (tenant_id, id)
);
-- The job's queue, and the screen's list (newest first).
CREATE INDEX tenant_export_waiting ON tenant_export (tenant_id, requested_at) WHERE state IN ('queued', 'running');
CREATE INDEX tenant_export_recent ON tenant_export (tenant_id, requested_at DESC);

SELECT isolate_by_tenant('tenant_export');

-- An export is asked for (insert) and moved along by the job (these columns);
-- never deleted: it is the record that the tenant's data left.
GRANT SELECT, INSERT ON tenant_export TO exceptao_app;
GRANT UPDATE (state, progress, started_at, object_key, size, sha256, chain_seq, chain_hash, error, finished_at,
              expires_at) ON tenant_export TO exceptao_app;
