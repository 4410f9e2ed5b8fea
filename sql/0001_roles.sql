-- run-as: admin
-- The four database roles of DESIGN.md. Roles are cluster-wide, so each is
-- created only when missing and its attributes are (re)asserted every time.
-- Creating roles and granting BYPASSRLS needs a superuser: this file runs as
-- the administrator `exceptao migrate` connects as; every later file runs as
-- exceptao_migrator, which therefore owns the schema.

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['exceptao_migrator', 'exceptao_app',
                             'exceptao_audit_writer', 'exceptao_operator'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- another database's migration created it a moment ago
            END;
        END IF;
    END LOOP;
END
$$;

-- migrator: owns the schema, DDL only, never logs in (`exceptao migrate` SETs ROLE to it).
ALTER ROLE exceptao_migrator NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION;
-- app: the runtime pool. Not a superuser, owns nothing, cannot bypass RLS.
ALTER ROLE exceptao_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION NOINHERIT;
-- audit_writer: owns the one function through which events are appended.
ALTER ROLE exceptao_audit_writer NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION;
-- operator: the cross-tenant operator panel only; a separate login, never the app pool.
ALTER ROLE exceptao_operator LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE BYPASSRLS NOREPLICATION NOINHERIT;

-- The migrator hands audit_append over to audit_writer, which needs membership.
GRANT exceptao_audit_writer TO exceptao_migrator;

DO $$
BEGIN
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO exceptao_app, exceptao_operator',
                   current_database());
END
$$;

REVOKE CREATE ON SCHEMA public FROM PUBLIC;
-- WITH GRANT OPTION: the migrator lends CREATE to audit_writer only while handing it a function.
GRANT USAGE, CREATE ON SCHEMA public TO exceptao_migrator WITH GRANT OPTION;
GRANT USAGE ON SCHEMA public TO exceptao_app, exceptao_audit_writer, exceptao_operator;

-- Functions the migrator creates are not callable by everyone unless granted.
ALTER DEFAULT PRIVILEGES FOR ROLE exceptao_migrator REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
