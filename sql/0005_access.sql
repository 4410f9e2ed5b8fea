-- Access control: the capability catalogue, tenant-defined roles, groups with
-- parents, org units, role assignments (to a user or a group, optionally
-- within an org unit), personal API tokens, disabled users, suspended tenants.

-- The catalogue is fixed by the code (app/access/catalogue.py holds the same
-- list; a test compares them). Not tenant data: every tenant sees the same codes.
CREATE TABLE capability (
    code    text PRIMARY KEY CHECK (code ~ '^[a-z]+\.[a-z_]+$'),
    meaning text NOT NULL CHECK (length(meaning) BETWEEN 1 AND 200)
);
INSERT INTO capability (code, meaning) VALUES
    ('exception.submit',   'Submit policy exceptions and edit their own drafts'),
    ('exception.read',     'See exceptions, their history and decisions'),
    ('exception.review',   'Review submitted exceptions and ask for changes'),
    ('exception.approve',  'Approve or reject exceptions (needs a recent second factor)'),
    ('risk.manage',        'Own and update entries in the risk register'),
    ('evidence.read',      'Open and download evidence files'),
    ('audit.read',         'Read the audit trail and export it for verification'),
    ('report.export',      'Export reports as PDF or CSV'),
    ('vendor.manage',      'Manage vendors and send self-assessment links'),
    ('asset.manage',       'Manage the asset inventory and its remediation tracking'),
    ('integration.manage', 'Connect and configure integrations (SSO, Slack, Jira, NVD)'),
    ('tenant.admin',       'Manage users, groups, roles and org units of the workspace');
GRANT SELECT ON capability TO exceptao_app, exceptao_operator;

ALTER TABLE tenant ADD COLUMN suspended_at timestamptz;
GRANT UPDATE (suspended_at) ON tenant TO exceptao_operator;
GRANT INSERT ON tenant TO exceptao_operator;

ALTER TABLE app_user
    ADD COLUMN disabled_at timestamptz,
    ADD CONSTRAINT app_user_tenant_id_id UNIQUE (tenant_id, id);

-- The org unit of the current transaction for a site-bound user, set with
-- set_config('app.current_org_unit_id', id, true) beside the tenant. Unset
-- means the whole tenant.
CREATE FUNCTION app_current_org_unit() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT nullif(current_setting('app.current_org_unit_id', true), '')::uuid $$;
GRANT EXECUTE ON FUNCTION app_current_org_unit() TO exceptao_app, exceptao_operator;

CREATE TABLE org_unit (
    tenant_id  uuid NOT NULL REFERENCES tenant (id),
    id         uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    parent_id  uuid,
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, parent_id) REFERENCES org_unit (tenant_id, id)
);
CREATE UNIQUE INDEX org_unit_name ON org_unit (tenant_id, coalesce(parent_id, tenant_id), lower(name));
CREATE INDEX org_unit_parent ON org_unit (parent_id);

CREATE TABLE user_group (
    tenant_id   uuid NOT NULL REFERENCES tenant (id),
    id          uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    parent_id   uuid,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 1000),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, parent_id) REFERENCES user_group (tenant_id, id)
);
CREATE UNIQUE INDEX user_group_name ON user_group (tenant_id, lower(name));
CREATE INDEX user_group_parent ON user_group (parent_id);

CREATE TABLE group_member (
    tenant_id uuid NOT NULL REFERENCES tenant (id),
    group_id  uuid NOT NULL,
    user_id   uuid NOT NULL,
    added_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, user_id),
    FOREIGN KEY (tenant_id, group_id) REFERENCES user_group (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, user_id) REFERENCES app_user (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX group_member_user ON group_member (user_id);

CREATE TABLE role (
    tenant_id   uuid NOT NULL REFERENCES tenant (id),
    id          uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 1000),
    seeded_as   text,           -- which default role it started as; editable all the same
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id)
);
CREATE UNIQUE INDEX role_name ON role (tenant_id, lower(name));

CREATE TABLE role_capability (
    tenant_id  uuid NOT NULL REFERENCES tenant (id),
    role_id    uuid NOT NULL,
    capability text NOT NULL REFERENCES capability (code),
    PRIMARY KEY (role_id, capability),
    FOREIGN KEY (tenant_id, role_id) REFERENCES role (tenant_id, id) ON DELETE CASCADE
);

-- A role given to one user or one group, in the whole tenant or only within an
-- org unit and its descendants (a site-bound assignment). The column is not
-- called org_unit_id: the assignment is not data of that unit, it limits it.
CREATE TABLE role_assignment (
    tenant_id      uuid NOT NULL REFERENCES tenant (id),
    id             uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    role_id        uuid NOT NULL,
    user_id        uuid,
    group_id       uuid,
    within_unit_id uuid,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (num_nonnulls(user_id, group_id) = 1),
    FOREIGN KEY (tenant_id, role_id) REFERENCES role (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES app_user (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, group_id) REFERENCES user_group (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, within_unit_id) REFERENCES org_unit (tenant_id, id)
);
CREATE UNIQUE INDEX role_assignment_once ON role_assignment
    (tenant_id, role_id, coalesce(user_id, group_id), coalesce(within_unit_id, tenant_id));
CREATE INDEX role_assignment_user ON role_assignment (user_id);
CREATE INDEX role_assignment_group ON role_assignment (group_id);

-- Personal API tokens: a subset of the owner's capabilities, checked against
-- the owner's capabilities again on every use. Only SHA-256 of the token is kept.
CREATE TABLE api_token (
    tenant_id     uuid NOT NULL REFERENCES tenant (id),
    id            uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    user_id       uuid NOT NULL,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    token_hash    bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    hint          text NOT NULL CHECK (length(hint) BETWEEN 1 AND 20),   -- the first characters, to tell tokens apart
    capabilities  text[] NOT NULL CHECK (cardinality(capabilities) > 0),
    scope_unit_id uuid,                                                  -- the owner's scope when it was made
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    last_used_at  timestamptz,
    revoked_at    timestamptz,
    CHECK (expires_at > created_at),
    FOREIGN KEY (tenant_id, user_id) REFERENCES app_user (tenant_id, id) ON DELETE CASCADE,
    -- A unit is deleted only once no assignment is limited to it, so no owner can
    -- still work there and its tokens are dead already: they go with it.
    FOREIGN KEY (tenant_id, scope_unit_id) REFERENCES org_unit (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX api_token_user ON api_token (tenant_id, user_id);

-- The scope a session works in: the whole tenant (NULL), or one org unit for
-- a site-bound user. Checked against the user's assignments on every request.
ALTER TABLE user_session ADD COLUMN scope_unit_id uuid REFERENCES org_unit (id) ON DELETE SET NULL;

-- Every tenant table from here on is put under isolation by this one function
-- (ENABLE + FORCE RLS, the tenant_isolation policy); grants stay with each table.
CREATE FUNCTION isolate_by_tenant(t regclass) RETURNS void
    LANGUAGE plpgsql
AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %s USING (tenant_id = app_current_tenant())'
                   ' WITH CHECK (tenant_id = app_current_tenant())', t);
END
$$;

SELECT isolate_by_tenant(t) FROM unnest(ARRAY['org_unit', 'user_group', 'group_member', 'role', 'role_capability',
                                               'role_assignment', 'api_token']::regclass[]) AS t;
GRANT SELECT, INSERT, UPDATE, DELETE
    ON org_unit, user_group, group_member, role, role_capability, role_assignment, api_token TO exceptao_app;
GRANT SELECT
    ON org_unit, user_group, group_member, role, role_capability, role_assignment, api_token TO exceptao_operator;
GRANT INSERT ON role, role_capability TO exceptao_operator;  -- default roles of a tenant it creates

-- Hierarchies without cycles. Changes to one tenant's tree are serialised by an
-- advisory lock, so two concurrent moves cannot close a loop between them.
CREATE FUNCTION refuse_hierarchy_cycle() RETURNS trigger
    LANGUAGE plpgsql SET search_path = public, pg_temp
AS $$
DECLARE
    loop_found boolean;
BEGIN
    IF NEW.parent_id IS NULL THEN
        RETURN NEW;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended(TG_TABLE_NAME || ':' || NEW.tenant_id::text, 0));
    IF NEW.parent_id = NEW.id THEN
        loop_found := true;
    ELSE
        EXECUTE format($q$
            WITH RECURSIVE up(id, parent_id) AS (
                SELECT id, parent_id FROM %1$I WHERE id = $1
                UNION
                SELECT t.id, t.parent_id FROM %1$I t JOIN up ON t.id = up.parent_id
            )
            SELECT EXISTS (SELECT FROM up WHERE id = $2)
        $q$, TG_TABLE_NAME) INTO loop_found USING NEW.parent_id, NEW.id;
    END IF;
    IF loop_found THEN
        RAISE EXCEPTION '% "%" cannot be placed under one of its own descendants',
                        replace(TG_TABLE_NAME, '_', ' '), NEW.name
            USING ERRCODE = 'check_violation', CONSTRAINT = 'hierarchy_cycle';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER org_unit_no_cycle BEFORE INSERT OR UPDATE OF parent_id ON org_unit
    FOR EACH ROW EXECUTE FUNCTION refuse_hierarchy_cycle();
CREATE TRIGGER user_group_no_cycle BEFORE INSERT OR UPDATE OF parent_id ON user_group
    FOR EACH ROW EXECUTE FUNCTION refuse_hierarchy_cycle();

-- Org unit trees, read under the caller's RLS (so only within its tenant).
CREATE FUNCTION org_unit_subtree(root uuid) RETURNS SETOF uuid
    LANGUAGE sql STABLE SET search_path = public, pg_temp
AS $$
    WITH RECURSIVE down(id) AS (
        SELECT id FROM org_unit WHERE id = root
        UNION
        SELECT o.id FROM org_unit o JOIN down d ON o.parent_id = d.id
    )
    SELECT id FROM down
$$;
GRANT EXECUTE ON FUNCTION org_unit_subtree(uuid) TO exceptao_app, exceptao_operator;

-- Tables holding data of an org unit carry org_unit_id and call this in their
-- migration: a RESTRICTIVE policy, so on top of the tenant policy a site-bound
-- transaction sees and writes only rows of its unit and the units below it.
CREATE FUNCTION scope_by_org_unit(t regclass) RETURNS void
    LANGUAGE plpgsql
AS $$
BEGIN
    EXECUTE format(
        'CREATE POLICY org_unit_scope ON %s AS RESTRICTIVE'
        ' USING (app_current_org_unit() IS NULL OR org_unit_id IN (SELECT org_unit_subtree(app_current_org_unit())))'
        ' WITH CHECK (app_current_org_unit() IS NULL OR org_unit_id IN (SELECT org_unit_subtree(app_current_org_unit())))',
        t);
END
$$;

-- Everything a user holds: one row per capability per way of holding it.
-- `via` is the path from the user to the role: the groups, nearest first, then
-- the role. `unit_path` is the org unit the assignment is limited to, with its
-- ancestors, root first (empty when it holds in the whole tenant).
-- PL/pgSQL, not SQL: its plan is cached per connection (a SQL function that
-- cannot be inlined is planned on every call: 3 ms of the 6 measured in bench/).
CREATE FUNCTION access_grants(p_user uuid)
    RETURNS TABLE (capability text, within_unit_id uuid, unit_path uuid[], unit_names text[], via jsonb)
    LANGUAGE plpgsql STABLE SET search_path = public, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH RECURSIVE
    -- Each step looks the next parent up by its key (LATERAL ... LIMIT 1 keeps
    -- the planner from hashing the whole table once per level).
    memberships(group_id, parent_id, via, depth) AS (
        SELECT g.id, g.parent_id,
               jsonb_build_array(jsonb_build_object('kind', 'group', 'id', g.id, 'name', g.name)), 1
          FROM group_member m
          CROSS JOIN LATERAL (SELECT id, parent_id, name FROM user_group WHERE id = m.group_id LIMIT 1) g
         WHERE m.user_id = p_user
        UNION ALL
        SELECT p.id, p.parent_id, m.via || jsonb_build_object('kind', 'group', 'id', p.id, 'name', p.name),
               m.depth + 1
          FROM memberships m
          CROSS JOIN LATERAL (SELECT id, parent_id, name FROM user_group WHERE id = m.parent_id LIMIT 1) p
         WHERE m.depth < 64
    ),
    held(role_id, within_unit_id, via) AS (
        SELECT a.role_id, a.within_unit_id, '[]'::jsonb
          FROM role_assignment a WHERE a.user_id = p_user
        UNION ALL
        SELECT a.role_id, a.within_unit_id, m.via
          FROM memberships m
          CROSS JOIN LATERAL (SELECT role_id, within_unit_id FROM role_assignment
                               WHERE group_id = m.group_id OFFSET 0) a
    ),
    units(leaf, parent_id, path, names) AS (
        SELECT o.id, o.parent_id, ARRAY[o.id], ARRAY[o.name]
          FROM (SELECT DISTINCT within_unit_id FROM held WHERE within_unit_id IS NOT NULL) h
          CROSS JOIN LATERAL (SELECT id, parent_id, name FROM org_unit WHERE id = h.within_unit_id LIMIT 1) o
        UNION ALL
        SELECT u.leaf, p.parent_id, p.id || u.path, p.name || u.names
          FROM units u
          CROSS JOIN LATERAL (SELECT id, parent_id, name FROM org_unit WHERE id = u.parent_id LIMIT 1) p
         WHERE cardinality(u.path) < 64
    )
    SELECT rc.capability, h.within_unit_id,
           coalesce(u.path, '{}'), coalesce(u.names, '{}'),
           h.via || jsonb_build_object('kind', 'role', 'id', r.id, 'name', r.name)
      FROM held h
      JOIN role r ON r.id = h.role_id
      JOIN role_capability rc ON rc.role_id = r.id
      LEFT JOIN units u ON u.leaf = h.within_unit_id AND u.parent_id IS NULL
     WHERE EXISTS (SELECT FROM app_user x WHERE x.id = p_user AND x.disabled_at IS NULL);
END
$$;
GRANT EXECUTE ON FUNCTION access_grants(uuid) TO exceptao_app, exceptao_operator;

-- The default roles of a new tenant; editable afterwards like any other role.
CREATE FUNCTION seed_default_roles(p_tenant uuid) RETURNS void
    LANGUAGE plpgsql SET search_path = public, pg_temp
AS $$
DECLARE
    d record;
    new_role uuid;
BEGIN
    FOR d IN SELECT * FROM (VALUES
        ('requester', 'Requester', 'Submits exceptions and follows them',
         ARRAY['exception.submit', 'exception.read']),
        ('approver', 'Approver', 'Reviews and decides on exceptions',
         ARRAY['exception.read', 'exception.review', 'exception.approve', 'evidence.read']),
        ('risk_owner', 'Risk owner', 'Owns residual risks in the register',
         ARRAY['exception.read', 'exception.review', 'risk.manage', 'evidence.read', 'report.export']),
        ('auditor', 'Auditor (read-only)', 'Reads everything, changes nothing',
         ARRAY['exception.read', 'evidence.read', 'audit.read', 'report.export']),
        ('admin', 'Administrator', 'Runs the workspace',
         (SELECT array_agg(code ORDER BY code) FROM capability))
    ) AS v(key, name, description, caps)
    LOOP
        INSERT INTO role (tenant_id, name, description, seeded_as)
        VALUES (p_tenant, d.name, d.description, d.key)
        RETURNING id INTO new_role;
        INSERT INTO role_capability (tenant_id, role_id, capability)
        SELECT p_tenant, new_role, c FROM unnest(d.caps) AS c;
    END LOOP;
END
$$;
GRANT EXECUTE ON FUNCTION seed_default_roles(uuid) TO exceptao_operator;

-- Per-tenant seed data (default roles, transitions) for tenants made before
-- the migration that adds it: `seed` is called once per tenant, in that tenant.
CREATE FUNCTION seed_every_tenant(seed regproc) RETURNS void
    LANGUAGE plpgsql
AS $$
DECLARE t uuid;
BEGIN
    FOR t IN SELECT id FROM tenant LOOP
        PERFORM set_config('app.current_tenant_id', t::text, true);
        EXECUTE format('SELECT %s($1)', seed) USING t;
    END LOOP;
    PERFORM set_config('app.current_tenant_id', '', true);
END
$$;
SELECT seed_every_tenant('seed_default_roles');

-- Operators act on tenants from the operator panel; their events carry actor
-- operator:<uuid> in the tenant's chain (DESIGN.md lists user, system, vendor).
ALTER TABLE audit_pending DROP CONSTRAINT audit_pending_actor_check,
    ADD CONSTRAINT audit_pending_actor_check CHECK (actor ~ '^(user|system|vendor|operator):[A-Za-z0-9_.:-]+$');
ALTER TABLE audit_log DROP CONSTRAINT audit_log_actor_check,
    ADD CONSTRAINT audit_log_actor_check CHECK (actor ~ '^(user|system|vendor|operator):[A-Za-z0-9_.:-]+$');
