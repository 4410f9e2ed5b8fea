-- The exception list: its default order (last changed first) and the filters
-- it offers (owner, rating, ends within N days) served by indexes, so a page
-- of a filtered list does not sort the whole tenant.

CREATE INDEX exception_recent ON exception (tenant_id, updated_at DESC, id);
CREATE INDEX exception_ends ON exception (tenant_id, ends_on, id);
CREATE INDEX exception_rating ON exception (tenant_id, rating, id);
CREATE INDEX exception_requester ON exception (tenant_id, requester_id);
-- "Awaiting my review" looks for my approval in the current round.
CREATE INDEX exception_approval_round ON exception_event (exception_id, review_round) WHERE kind = 'approval';
