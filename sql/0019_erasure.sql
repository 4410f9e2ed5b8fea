-- Erasure of a person (DPA section 11): their identity in audit_pii becomes a
-- stable tombstone `actor_tombstone_<uuid>` and the salt is destroyed, so the
-- chain still verifies over the commitment while nobody can recover or check
-- who it was; their account is anonymised; each erasure is recorded with its
-- legal-basis note, to be provided to the controller on request (11.4).
--
-- The app role may only SELECT audit_pii. The two functions below, owned by
-- the migrator and still under the tables' forced RLS, are the only way it
-- changes a row there, and the audit_pii_erasure_only trigger admits nothing
-- but a tombstone. audit_log is not touched.

-- One row per erased person. Never the address itself, not even hashed: a
-- hash of an address can be matched against a guess, so it is personal data.
CREATE TABLE erasure (
    tenant_id          uuid NOT NULL REFERENCES tenant (id),
    id                 uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    tombstone          uuid NOT NULL,              -- text form: actor_tombstone_<uuid>
    erased_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    requested_by       text NOT NULL CHECK (requested_by ~ '^(user|system):[A-Za-z0-9_.:-]+$'),
    basis              text NOT NULL CHECK (length(btrim(basis)) BETWEEN 1 AND 5000),
    reference          text CHECK (length(reference) BETWEEN 1 AND 200),
    audit_rows         integer NOT NULL CHECK (audit_rows >= 0),
    account_anonymised boolean NOT NULL,
    other_records      integer NOT NULL CHECK (other_records >= 0),
    UNIQUE (tenant_id, tombstone)
);
CREATE INDEX erasure_recent ON erasure (tenant_id, erased_at DESC);
SELECT isolate_by_tenant('erasure');
GRANT SELECT, INSERT ON erasure TO exceptao_app;      -- a record of an erasure is never changed
GRANT SELECT ON erasure TO exceptao_operator;

-- A case-insensitive regular expression matching the address `s` where it
-- stands as a whole address: not inside a longer one (bjan@example.com or
-- jan@example.com.pl are other people's).
CREATE FUNCTION erasure_literal(s text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT '(?i)(?<![[:alnum:]._%+-])' || regexp_replace(s, '([^[:alnum:]])', '\\\1', 'g')
        || '(?![[:alnum:]_-]|\.[[:alnum:]])'
$$;

-- The current tenant's audit_pii rows of one person, not yet erased: those
-- whose email is `p_email` (any case), and those their account `p_user` acted
-- in itself (its IP and user agent, whatever address it had then), but not its
-- events about another user, whose pii is that other user's. The confirmation
-- screen counts them; erase_audit_pii erases them.
CREATE FUNCTION erasure_candidates(p_email text, p_user uuid) RETURNS SETOF bigint
    LANGUAGE sql STABLE
AS $$
    SELECT p.seq FROM audit_pii AS p
     WHERE p.tenant_id = app_current_tenant() AND p.salt IS NOT NULL
       AND (lower(p.email) = lower(p_email)
            OR EXISTS (SELECT FROM audit_log AS l
                        WHERE l.tenant_id = p.tenant_id AND l.seq = p.seq
                          AND l.actor = 'user:' || p_user::text
                          AND NOT (l.target_type = 'user' AND l.target_id <> p_user::text)))
$$;

-- Tombstones those rows, one tombstone on all of them. Returns how many.
CREATE FUNCTION erase_audit_pii(p_email text, p_user uuid, p_tombstone text) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
    t     uuid := app_current_tenant();
    n     integer;
BEGIN
    IF t IS NULL THEN
        RAISE EXCEPTION 'no tenant is set for this transaction' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF p_tombstone !~ '^actor_tombstone_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
        RAISE EXCEPTION 'not a tombstone' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE audit_pii AS p
       SET email = p_tombstone,
           ip = CASE WHEN p.ip IS NULL THEN NULL ELSE p_tombstone END,
           user_agent = NULL,
           salt = NULL
     WHERE p.tenant_id = t AND p.seq IN (SELECT erasure_candidates(p_email, p_user));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- Every identity still in the current tenant's audit_pii, each its own
-- tombstone (people by address, any case; rows without one by IP address).
-- For tenant deletion (DPA 9.3 keeps only pseudonymised audit rows).
CREATE FUNCTION erase_audit_pii_all() RETURNS TABLE (tombstone text, audit_rows integer)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
    t uuid := app_current_tenant();
BEGIN
    IF t IS NULL THEN
        RAISE EXCEPTION 'no tenant is set for this transaction' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN QUERY
    WITH who AS (
        SELECT k.identity, 'actor_tombstone_' || gen_random_uuid()::text AS stone
          FROM (SELECT DISTINCT coalesce(lower(p.email), 'ip:' || p.ip, '') AS identity
                  FROM audit_pii AS p WHERE p.tenant_id = t AND p.salt IS NOT NULL) AS k
    ), erased AS (
        UPDATE audit_pii AS p
           SET email = who.stone,
               ip = CASE WHEN p.ip IS NULL THEN NULL ELSE who.stone END,
               user_agent = NULL,
               salt = NULL
          FROM who
         WHERE p.tenant_id = t AND p.salt IS NOT NULL
           AND coalesce(lower(p.email), 'ip:' || p.ip, '') = who.identity
        RETURNING who.stone
    )
    SELECT e.stone, count(*)::integer FROM erased AS e GROUP BY e.stone ORDER BY e.stone;
END
$$;

-- The address written into the current tenant's free text (what people typed,
-- mail waiting in or sent from the outbox, notifications, names of things)
-- becomes the tombstone. Some of these columns the app role may not update at
-- all, hence SECURITY DEFINER, limited to this one replacement. Returns the
-- number of rows changed.
CREATE FUNCTION erase_address_in_text(p_email text, p_tombstone text) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
    t       uuid := app_current_tenant();
    pattern text := erasure_literal(p_email);
    target  record;
    n       integer;
    total   integer := 0;
BEGIN
    IF t IS NULL THEN
        RAISE EXCEPTION 'no tenant is set for this transaction' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF p_tombstone !~ '^actor_tombstone_[0-9a-f-]{36}$' OR length(btrim(p_email)) < 3 THEN
        RAISE EXCEPTION 'not an address and a tombstone' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR target IN
        SELECT * FROM (VALUES
            ('exception', ARRAY['title', 'policy_ref', 'assets', 'deviation', 'justification', 'compensating_controls']),
            ('exception_event', ARRAY['comment']),
            ('risk', ARRAY['title', 'description', 'treatment']),
            ('evidence', ARRAY['filename']),
            ('evidence_decision', ARRAY['comment']),
            ('notification', ARRAY['text']),
            ('mail_outbox', ARRAY['subject', 'body', 'last_error']),
            ('api_token', ARRAY['name']),
            ('webauthn_credential', ARRAY['name']),
            ('user_group', ARRAY['name', 'description']),
            ('role', ARRAY['name', 'description']),
            ('org_unit', ARRAY['name'])
        ) AS v(tab, cols)
    LOOP
        EXECUTE format('UPDATE %I SET %s WHERE tenant_id = $1 AND (%s)', target.tab,
                       (SELECT string_agg(format('%I = regexp_replace(%I, $2, $3, ''g'')', c, c), ', ')
                          FROM unnest(target.cols) AS c),
                       (SELECT string_agg(format('%I ~ $2', c), ' OR ') FROM unnest(target.cols) AS c))
            USING t, pattern, p_tombstone;
        GET DIAGNOSTICS n = ROW_COUNT;
        total := total + n;
    END LOOP;
    RETURN total;
END
$$;

GRANT EXECUTE ON FUNCTION erasure_literal(text), erasure_candidates(text, uuid) TO exceptao_app;
GRANT EXECUTE ON FUNCTION erase_audit_pii(text, uuid, text), erase_audit_pii_all(),
    erase_address_in_text(text, text) TO exceptao_app;
