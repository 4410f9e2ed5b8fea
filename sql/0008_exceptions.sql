-- Exceptions: the record, its allowed transitions (rows, seeded per tenant),
-- and its events. The engine in app/exceptions/ only validates a requested
-- transition against these rows; it never decides a state by itself.

CREATE TABLE exception_settings (
    tenant_id            uuid PRIMARY KEY REFERENCES tenant (id),
    max_term_months      integer NOT NULL DEFAULT 12 CHECK (max_term_months BETWEEN 1 AND 60),
    approval_levels      integer NOT NULL DEFAULT 1 CHECK (approval_levels IN (1, 2)),
    two_levels_at_rating integer CHECK (two_levels_at_rating BETWEEN 1 AND 25)  -- rating from which two levels are needed
);

CREATE TABLE exception (
    tenant_id             uuid NOT NULL REFERENCES tenant (id),
    id                    uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    org_unit_id           uuid,
    title                 text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    policy_ref            text NOT NULL CHECK (length(policy_ref) BETWEEN 1 AND 500),
    assets                text NOT NULL DEFAULT '' CHECK (length(assets) <= 2000),
    deviation             text NOT NULL CHECK (length(deviation) BETWEEN 1 AND 10000),
    justification         text NOT NULL CHECK (length(justification) BETWEEN 1 AND 10000),
    compensating_controls text NOT NULL DEFAULT '' CHECK (length(compensating_controls) <= 10000),
    likelihood            integer NOT NULL CHECK (likelihood BETWEEN 1 AND 5),
    impact                integer NOT NULL CHECK (impact BETWEEN 1 AND 5),
    rating                integer GENERATED ALWAYS AS (likelihood * impact) STORED,
    requester_id          uuid NOT NULL,
    owner_id              uuid NOT NULL,
    starts_on             date NOT NULL,
    ends_on               date NOT NULL,
    state                 text NOT NULL DEFAULT 'DRAFT' CHECK (state IN (
                              'DRAFT', 'UNDER_REVIEW', 'APPROVED', 'REJECTED', 'RETURNED', 'ACTIVE',
                              'EXPIRING_SOON', 'EXPIRED', 'REVOKED', 'WITHDRAWN')),
    approvals_needed      integer NOT NULL DEFAULT 1 CHECK (approvals_needed IN (1, 2)),
    review_round          integer NOT NULL DEFAULT 0,           -- each submission starts a new round
    predecessor_id        uuid,                                  -- the exception this one renews
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_on > starts_on),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, org_unit_id) REFERENCES org_unit (tenant_id, id),
    FOREIGN KEY (tenant_id, requester_id) REFERENCES app_user (tenant_id, id),
    FOREIGN KEY (tenant_id, owner_id) REFERENCES app_user (tenant_id, id),
    FOREIGN KEY (tenant_id, predecessor_id) REFERENCES exception (tenant_id, id)
);
CREATE INDEX exception_state ON exception (tenant_id, state, ends_on);
CREATE INDEX exception_owner ON exception (tenant_id, owner_id);
CREATE UNIQUE INDEX exception_one_renewal ON exception (predecessor_id) WHERE predecessor_id IS NOT NULL;

-- The allowed transitions. `actor` says who may ask: a user holding
-- `capability` (and, for `requester_only`, only the exception's requester), or
-- the system (a scheduled job). `approval_level` marks the approvals counted
-- toward approvals_needed: level 1, then level 2 by a different person.
CREATE TABLE exception_transition (
    tenant_id        uuid NOT NULL REFERENCES tenant (id),
    from_state       text NOT NULL,
    to_state         text NOT NULL,
    actor            text NOT NULL CHECK (actor IN ('user', 'system')),
    capability       text REFERENCES capability (code),
    requester_only   boolean NOT NULL DEFAULT false,
    comment_required boolean NOT NULL DEFAULT false,
    step_up_required boolean NOT NULL DEFAULT false,
    approval_level   integer NOT NULL DEFAULT 0 CHECK (approval_level IN (0, 1, 2)),
    PRIMARY KEY (tenant_id, from_state, to_state, approval_level),
    CHECK ((actor = 'user') = (capability IS NOT NULL))
);

CREATE TABLE exception_event (
    tenant_id      uuid NOT NULL REFERENCES tenant (id),
    id             uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    exception_id   uuid NOT NULL,
    org_unit_id    uuid,
    at             timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor          text NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('transition', 'approval', 'attestation', 'reminder', 'edit')),
    from_state     text,
    to_state       text,
    approval_level integer,
    review_round   integer,
    comment        text CHECK (length(comment) <= 5000),
    FOREIGN KEY (tenant_id, exception_id) REFERENCES exception (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX exception_event_exception ON exception_event (exception_id, at);

SELECT isolate_by_tenant(t)
  FROM unnest(ARRAY['exception_settings', 'exception', 'exception_transition', 'exception_event']::regclass[]) AS t;
GRANT SELECT ON exception_settings, exception, exception_transition, exception_event
    TO exceptao_app, exceptao_operator;
-- Exceptions and their events are data of an org unit: a site-bound user sees only theirs.
SELECT scope_by_org_unit('exception');
SELECT scope_by_org_unit('exception_event');
GRANT INSERT, UPDATE ON exception, exception_settings TO exceptao_app;
GRANT INSERT ON exception_event TO exceptao_app;      -- events are never changed or removed
GRANT INSERT, UPDATE, DELETE ON exception_transition TO exceptao_app;
GRANT INSERT ON exception_settings, exception_transition TO exceptao_operator;

CREATE FUNCTION seed_exception_transitions(p_tenant uuid) RETURNS void
    LANGUAGE sql
AS $$
    INSERT INTO exception_settings (tenant_id) VALUES (p_tenant) ON CONFLICT DO NOTHING;
    INSERT INTO exception_transition (tenant_id, from_state, to_state, actor, capability, requester_only,
                                      comment_required, step_up_required, approval_level)
    SELECT p_tenant, f, t, a, c, r, cm, su, lvl FROM (VALUES
        ('DRAFT',         'UNDER_REVIEW',  'user',   'exception.submit',  true,  false, false, 0),
        ('DRAFT',         'WITHDRAWN',     'user',   'exception.submit',  true,  false, false, 0),
        ('RETURNED',      'UNDER_REVIEW',  'user',   'exception.submit',  true,  false, false, 0),
        ('RETURNED',      'WITHDRAWN',     'user',   'exception.submit',  true,  false, false, 0),
        ('UNDER_REVIEW',  'WITHDRAWN',     'user',   'exception.submit',  true,  false, false, 0),
        ('UNDER_REVIEW',  'RETURNED',      'user',   'exception.review',  false, true,  false, 0),
        ('UNDER_REVIEW',  'REJECTED',      'user',   'exception.approve', false, true,  true,  0),
        ('UNDER_REVIEW',  'APPROVED',      'user',   'exception.approve', false, true,  true,  1),
        ('UNDER_REVIEW',  'APPROVED',      'user',   'exception.approve', false, true,  true,  2),
        ('APPROVED',      'ACTIVE',        'system', NULL,                false, false, false, 0),
        ('APPROVED',      'REVOKED',       'user',   'exception.approve', false, true,  true,  0),
        ('ACTIVE',        'EXPIRING_SOON', 'system', NULL,                false, false, false, 0),
        ('ACTIVE',        'EXPIRED',       'system', NULL,                false, false, false, 0),
        ('ACTIVE',        'REVOKED',       'user',   'exception.approve', false, true,  true,  0),
        ('EXPIRING_SOON', 'EXPIRED',       'system', NULL,                false, false, false, 0),
        ('EXPIRING_SOON', 'REVOKED',       'user',   'exception.approve', false, true,  true,  0)
    ) AS v(f, t, a, c, r, cm, su, lvl)
    ON CONFLICT DO NOTHING;
$$;
GRANT EXECUTE ON FUNCTION seed_exception_transitions(uuid) TO exceptao_operator;

SELECT seed_every_tenant('seed_exception_transitions');
