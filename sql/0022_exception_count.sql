-- The exception list shows how many exceptions match ("10,000 exceptions, page
-- 1 of 200"). Unfiltered, that count read every row of the tenant's exceptions
-- from the heap, about 4 ms for 10,000 (bench/README.md), because the
-- row-level security policy also looks at org_unit_id. With both columns in one
-- index the count is an index-only scan, about half that.
CREATE INDEX exception_unit ON exception (tenant_id, org_unit_id);
