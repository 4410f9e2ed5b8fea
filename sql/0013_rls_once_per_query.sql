-- run-as: admin
-- The tenant and org-unit policies read the current tenant and unit through a
-- sub-select. The meaning is unchanged; the sub-select is an InitPlan, run once
-- per query, where the bare function call ran once per row: a tenant-wide scan
-- (a search, a count) spent most of its time re-reading the setting for every
-- row. An index condition on tenant_id still uses it as before.
-- Run as the administrator: the policies are on tables of several owners.

CREATE OR REPLACE FUNCTION isolate_by_tenant(t regclass) RETURNS void
    LANGUAGE plpgsql
AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %s USING (tenant_id = (SELECT app_current_tenant()))'
                   ' WITH CHECK (tenant_id = (SELECT app_current_tenant()))', t);
END
$$;

CREATE OR REPLACE FUNCTION scope_by_org_unit(t regclass) RETURNS void
    LANGUAGE plpgsql
AS $$
BEGIN
    EXECUTE format(
        'CREATE POLICY org_unit_scope ON %s AS RESTRICTIVE'
        ' USING ((SELECT app_current_org_unit()) IS NULL'
        ' OR org_unit_id IN (SELECT org_unit_subtree(app_current_org_unit())))'
        ' WITH CHECK ((SELECT app_current_org_unit()) IS NULL'
        ' OR org_unit_id IN (SELECT org_unit_subtree(app_current_org_unit())))',
        t);
END
$$;

-- The policies made so far, where they still read exactly as those functions made them.
DO $$
DECLARE
    p record;
BEGIN
    FOR p IN SELECT polrelid::regclass AS t, polname, pg_get_expr(polqual, polrelid) AS qual,
                    pg_get_expr(polwithcheck, polrelid) AS with_check
               FROM pg_policy
              WHERE polname IN ('tenant_isolation', 'org_unit_scope')
    LOOP
        IF p.polname = 'tenant_isolation' AND p.qual = '(tenant_id = app_current_tenant())'
           AND p.with_check IS NOT DISTINCT FROM p.qual THEN
            EXECUTE format('ALTER POLICY tenant_isolation ON %s USING (tenant_id = (SELECT app_current_tenant()))'
                           ' WITH CHECK (tenant_id = (SELECT app_current_tenant()))', p.t);
        ELSIF p.polname = 'org_unit_scope' AND p.qual LIKE '((app_current_org_unit() IS NULL) OR %'
              AND p.with_check = p.qual THEN
            EXECUTE format('ALTER POLICY org_unit_scope ON %s'
                           ' USING ((SELECT app_current_org_unit()) IS NULL'
                           ' OR org_unit_id IN (SELECT org_unit_subtree(app_current_org_unit())))'
                           ' WITH CHECK ((SELECT app_current_org_unit()) IS NULL'
                           ' OR org_unit_id IN (SELECT org_unit_subtree(app_current_org_unit())))', p.t);
        END IF;
    END LOOP;
END
$$;
