-- Evidence: files attached to an exception or a risk, hashed on receipt,
-- DLP-scanned, encrypted with the tenant's data key and kept in object
-- storage under an opaque name (app.evidence, app.storage). The row is written
-- only after the object is stored, in one transaction with its findings and
-- its audit entry; a refused or interrupted upload leaves neither.

-- What the scanner's findings lead to, per tenant. No row: quarantine.
CREATE TABLE evidence_settings (
    tenant_id  uuid PRIMARY KEY REFERENCES tenant (id),
    dlp_policy text NOT NULL DEFAULT 'quarantine'
               CHECK (dlp_policy IN ('block', 'quarantine', 'accept_with_warning')),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE evidence (
    tenant_id    uuid NOT NULL REFERENCES tenant (id),
    id           uuid NOT NULL PRIMARY KEY,        -- made before the upload: the encryption binds it
    org_unit_id  uuid,                              -- the exception's or the risk's, set by the trigger below
    exception_id uuid,
    risk_id      uuid,
    filename     text NOT NULL CHECK (length(filename) BETWEEN 1 AND 255),   -- sanitised
    content_type text NOT NULL CHECK (content_type ~ '^[a-z0-9.+-]+/[a-z0-9.+-]+(; charset=utf-8)?$'),
    file_type    text NOT NULL CHECK (length(file_type) BETWEEN 1 AND 40),    -- the scanner's name for it
    size         bigint NOT NULL CHECK (size >= 0),
    sha256       bytea NOT NULL CHECK (length(sha256) = 32),                  -- of the plaintext, on receipt
    object_name  text NOT NULL UNIQUE CHECK (length(object_name) BETWEEN 1 AND 512),
    data_key_id  uuid NOT NULL,
    state        text NOT NULL CHECK (state IN ('stored', 'quarantined', 'rejected', 'released')),
    unscannable  text CHECK (length(unscannable) <= 500),                      -- why the scanner could not read it
    uploaded_by  uuid NOT NULL,
    uploaded_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (num_nonnulls(exception_id, risk_id) = 1),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, org_unit_id) REFERENCES org_unit (tenant_id, id),
    FOREIGN KEY (tenant_id, exception_id) REFERENCES exception (tenant_id, id),
    FOREIGN KEY (tenant_id, risk_id) REFERENCES risk (tenant_id, id),
    FOREIGN KEY (tenant_id, uploaded_by) REFERENCES app_user (tenant_id, id),
    FOREIGN KEY (tenant_id, data_key_id) REFERENCES tenant_key (tenant_id, id)
);
CREATE INDEX evidence_exception ON evidence (exception_id, uploaded_at) WHERE exception_id IS NOT NULL;
CREATE INDEX evidence_risk ON evidence (risk_id, uploaded_at) WHERE risk_id IS NOT NULL;
CREATE INDEX evidence_quarantined ON evidence (tenant_id, uploaded_at) WHERE state = 'quarantined';

-- What the scanner found: the kind, how many, and a masked sample. Never the value.
CREATE TABLE evidence_finding (
    tenant_id   uuid NOT NULL REFERENCES tenant (id),
    evidence_id uuid NOT NULL,
    org_unit_id uuid,                                 -- the evidence's, set by the trigger below
    kind        text NOT NULL CHECK (kind ~ '^[a-z0-9_]{1,40}$'),
    count       integer NOT NULL CHECK (count > 0),
    sample      text NOT NULL CHECK (length(sample) <= 200),
    PRIMARY KEY (evidence_id, kind),
    FOREIGN KEY (tenant_id, evidence_id) REFERENCES evidence (tenant_id, id)
);

-- The one decision on a quarantined file: released for use, or rejected (its object deleted).
CREATE TABLE evidence_decision (
    tenant_id   uuid NOT NULL REFERENCES tenant (id),
    evidence_id uuid NOT NULL PRIMARY KEY,
    org_unit_id uuid,                                 -- the evidence's, set by the trigger below
    decision    text NOT NULL CHECK (decision IN ('release', 'reject')),
    decided_by  uuid NOT NULL,
    decided_at  timestamptz NOT NULL DEFAULT now(),
    comment     text NOT NULL CHECK (length(comment) BETWEEN 1 AND 5000),
    FOREIGN KEY (tenant_id, evidence_id) REFERENCES evidence (tenant_id, id),
    FOREIGN KEY (tenant_id, decided_by) REFERENCES app_user (tenant_id, id)
);

-- Evidence takes the org unit of what it is attached to, read under the
-- inserter's own row-level security: a file cannot be attached to an exception
-- or a risk its uploader cannot see, nor land in another unit than its parent.
CREATE FUNCTION evidence_take_parent_unit() RETURNS trigger
    LANGUAGE plpgsql SET search_path = public, pg_temp
AS $$
BEGIN
    IF NEW.exception_id IS NOT NULL THEN
        SELECT org_unit_id INTO NEW.org_unit_id FROM exception WHERE id = NEW.exception_id;
    ELSE
        SELECT org_unit_id INTO NEW.org_unit_id FROM risk WHERE id = NEW.risk_id;
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'evidence is attached to something this transaction cannot see'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER evidence_parent_unit BEFORE INSERT ON evidence
    FOR EACH ROW EXECUTE FUNCTION evidence_take_parent_unit();

CREATE FUNCTION evidence_child_take_unit() RETURNS trigger
    LANGUAGE plpgsql SET search_path = public, pg_temp
AS $$
BEGIN
    SELECT org_unit_id INTO NEW.org_unit_id FROM evidence WHERE id = NEW.evidence_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no such evidence in this transaction''s view' USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER evidence_finding_unit BEFORE INSERT ON evidence_finding
    FOR EACH ROW EXECUTE FUNCTION evidence_child_take_unit();
CREATE TRIGGER evidence_decision_unit BEFORE INSERT ON evidence_decision
    FOR EACH ROW EXECUTE FUNCTION evidence_child_take_unit();

-- A file's state moves once, out of quarantine, and only with its decision
-- row in the same transaction (the decision is inserted first).
CREATE FUNCTION evidence_state_moves_once() RETURNS trigger
    LANGUAGE plpgsql SET search_path = public, pg_temp
AS $$
BEGIN
    IF NEW.state IS DISTINCT FROM OLD.state AND NOT (
           OLD.state = 'quarantined' AND NEW.state IN ('released', 'rejected')
           AND EXISTS (SELECT FROM evidence_decision d WHERE d.evidence_id = NEW.id
                          AND d.decision = CASE NEW.state WHEN 'released' THEN 'release' ELSE 'reject' END)) THEN
        RAISE EXCEPTION 'evidence cannot move from % to %', OLD.state, NEW.state
            USING ERRCODE = 'check_violation', CONSTRAINT = 'evidence_state_moves_once';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER evidence_state BEFORE UPDATE OF state ON evidence
    FOR EACH ROW EXECUTE FUNCTION evidence_state_moves_once();

SELECT isolate_by_tenant(t)
  FROM unnest(ARRAY['evidence_settings', 'evidence', 'evidence_finding', 'evidence_decision']::regclass[]) AS t;
-- Evidence is data of the unit of its exception or risk: a site-bound user sees only theirs.
SELECT scope_by_org_unit('evidence');
SELECT scope_by_org_unit('evidence_finding');
SELECT scope_by_org_unit('evidence_decision');

-- Evidence is a record: rows are never deleted, findings and decisions never
-- changed; only the state moves (above), and the policy is the tenant's to set.
GRANT SELECT, INSERT, UPDATE ON evidence_settings TO exceptao_app;
GRANT SELECT, INSERT ON evidence, evidence_finding, evidence_decision TO exceptao_app;
GRANT UPDATE (state) ON evidence TO exceptao_app;
GRANT SELECT ON evidence_settings, evidence, evidence_finding, evidence_decision TO exceptao_operator;
