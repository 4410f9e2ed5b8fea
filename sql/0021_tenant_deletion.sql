-- Tenant deletion after the retention period (DPA 9.1 to 9.3): app/tenant_deletion.
--
-- ended_at is when the tenant's subscription ended (`exceptao tenant end`);
-- the data may still be exported for 30 days after it (9.1), and deletion is
-- refused until then. deleted_at is set when a deletion starts: from then on
-- the tenant is unreachable (host 404, no jobs), whether or not the run has
-- finished. The row itself stays, its name replaced, so the slug is never
-- given to another customer and the kept audit rows still have their tenant.
ALTER TABLE tenant
    ADD COLUMN ended_at   timestamptz,
    ADD COLUMN deleted_at timestamptz,
    ADD CONSTRAINT tenant_deleted_after_end CHECK (deleted_at IS NULL OR ended_at IS NOT NULL);

-- What a deletion removed: counts only, never names, addresses or file names,
-- so it is no personal data and outlives the tenant's data (the deletion
-- certificate of 9.4 is written from it). finished_at stays NULL while a run
-- that crashed midway waits to be run again.
--
-- rows:    {"<table>": rows deleted} for every tenant table emptied
-- objects: objects removed from the object store (evidence, export archives)
-- kept:    {"audit_log": n, "audit_anchor": n, "audit_pii": n} kept under 9.3,
--          audit_pii pseudonymised (tombstone, salt destroyed)
CREATE TABLE tenant_deletion (
    tenant_id   uuid PRIMARY KEY REFERENCES tenant (id),
    ended_at    timestamptz NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_by  text NOT NULL CHECK (started_by ~ '^(system|operator):[A-Za-z0-9_.:-]+$'),
    finished_at timestamptz,
    rows        jsonb CHECK (jsonb_typeof(rows) = 'object'),
    objects     integer CHECK (objects >= 0),
    kept        jsonb CHECK (jsonb_typeof(kept) = 'object'),
    CHECK ((finished_at IS NULL) = (rows IS NULL) AND (finished_at IS NULL) = (objects IS NULL)
           AND (finished_at IS NULL) = (kept IS NULL))
);
SELECT isolate_by_tenant('tenant_deletion');

-- Deletion runs as the administrator (`exceptao tenant delete`), like
-- `tenant create`: the app role gets nothing new. Operators may read the record.
GRANT SELECT ON tenant_deletion TO exceptao_operator;
