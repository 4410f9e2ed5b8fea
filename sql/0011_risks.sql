-- The risk register: the risks an organisation carries, each with its owner,
-- its treatment and its next review. An exception that closes (EXPIRED,
-- REVOKED) is mirrored here as a residual risk by app.risks, in the same
-- transaction as the transition; exception_id links the two, once.

CREATE TABLE risk (
    tenant_id    uuid NOT NULL REFERENCES tenant (id),
    id           uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    org_unit_id  uuid,
    title        text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    -- A mirrored risk's description holds the exception's policy, deviation and
    -- compensating controls (up to 500 + 10000 + 10000 characters).
    description  text NOT NULL DEFAULT '' CHECK (length(description) <= 25000),
    likelihood   integer NOT NULL CHECK (likelihood BETWEEN 1 AND 5),
    impact       integer NOT NULL CHECK (impact BETWEEN 1 AND 5),
    rating       integer GENERATED ALWAYS AS (likelihood * impact) STORED,
    owner_id     uuid NOT NULL,
    treatment    text NOT NULL CHECK (treatment IN ('accept', 'mitigate', 'transfer', 'avoid')),
    review_on    date NOT NULL,
    exception_id uuid UNIQUE,                 -- the closed exception this risk mirrors, if any
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, org_unit_id) REFERENCES org_unit (tenant_id, id),
    FOREIGN KEY (tenant_id, owner_id) REFERENCES app_user (tenant_id, id),
    FOREIGN KEY (tenant_id, exception_id) REFERENCES exception (tenant_id, id)
);
CREATE INDEX risk_owner ON risk (tenant_id, owner_id);
CREATE INDEX risk_review ON risk (tenant_id, review_on);

SELECT isolate_by_tenant('risk');
-- A risk is data of an org unit, like the exception it may mirror.
SELECT scope_by_org_unit('risk');

-- Risks are kept, never deleted (the register is a record). The link to an
-- exception and the unit a risk belongs to are set once, when it is made.
GRANT SELECT, INSERT ON risk TO exceptao_app;
GRANT UPDATE (title, description, likelihood, impact, owner_id, treatment, review_on, updated_at)
    ON risk TO exceptao_app;
