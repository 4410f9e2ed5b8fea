-- Free-text search of the exception list finds words anywhere in the title,
-- policy, assets and deviation. Under row-level security PostgreSQL will not
-- use an index for ILIKE (not a leakproof operator), so every search reads the
-- tenant's exceptions; this keeps that read cheap: the text, lowered once when
-- written, matched with LIKE (a tenth of the cost of ILIKE on the fields).

ALTER TABLE exception ADD COLUMN search_text text
    GENERATED ALWAYS AS (lower(title || ' ' || policy_ref || ' ' || assets || ' ' || deviation)) STORED;
