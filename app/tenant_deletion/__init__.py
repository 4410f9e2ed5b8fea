"""Tenant deletion after the retention period (DPA 9.1 to 9.3).

A subscription ends (`exceptao tenant end SLUG`, app.tenant_deletion.subscription);
for 30 days after, the controller may still export everything. Then
`exceptao tenant delete SLUG` (app.tenant_deletion.deletion) removes all the
tenant's data from the database and the object store, keeping only its audit
chain with every identity pseudonymised, the tenant row (its slug is never
reused) and a record of the deletion in counts. `--dry-run` shows exactly that
and changes nothing. Which tables hold a tenant's data is read from the
catalogue (app.tenant_deletion.catalogue), never from a list.
"""
