-- Tenants, the tenant GUC every policy compares with, and the first tenant table.

-- The tenant of the current transaction, set by the application with
-- set_config('app.current_tenant_id', id, true) at the start of each request
-- transaction. Unset or reset (empty string) means no tenant: every policy
-- then matches no row.
CREATE FUNCTION app_current_tenant() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT nullif(current_setting('app.current_tenant_id', true), '')::uuid $$;
GRANT EXECUTE ON FUNCTION app_current_tenant()
    TO exceptao_app, exceptao_audit_writer, exceptao_operator;

-- The tenant registry is control-plane data (slugs are host names), so it has
-- no tenant_id and no RLS; the app may only read it. Tenants are created by
-- `exceptao tenant create` (administrator) or, later, the operator panel.
CREATE TABLE tenant (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    slug         text NOT NULL UNIQUE
                 CHECK (slug ~ '^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$'),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    audit_public boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT ON tenant TO exceptao_app, exceptao_operator;

-- Users: sign-in (issue 3) adds credentials; the embedded default seeds demo users.
CREATE TABLE app_user (
    tenant_id     uuid NOT NULL REFERENCES tenant (id),
    id            uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    email         text NOT NULL CHECK (email ~ '^[^@\s]+@[^@\s]+$' AND length(email) <= 254),
    display_name  text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    password_hash text,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX app_user_email ON app_user (tenant_id, lower(email));
ALTER TABLE app_user ENABLE ROW LEVEL SECURITY;
ALTER TABLE app_user FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app_user
    USING (tenant_id = app_current_tenant())
    WITH CHECK (tenant_id = app_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON app_user TO exceptao_app;
GRANT SELECT ON app_user TO exceptao_operator;
