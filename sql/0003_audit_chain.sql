-- The audit chain, version 1 (DESIGN.md "Audit chain, version 1").
--
-- The database, not the application, assigns seq, occurred_at, prev_hash and
-- row_hash. row_hash = SHA-256(prev_hash || UTF-8(JCS(record))) with JCS the
-- RFC 8785 canonical form, so anyone can recompute it with an ordinary JCS
-- library outside the database.

------------------------------------------------------------------------------
-- RFC 8785 canonicaliser
------------------------------------------------------------------------------

-- The shortest decimal that reads back as the integral double f, the nearest
-- to f among those of that length, the even one on a tie (ECMA-262 7.1.12.1).
-- f's exact value is an integer, so numeric arithmetic on it is exact.
CREATE FUNCTION jcs_shortest_integral(f float8) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
    SET extra_float_digits = 1
AS $$
DECLARE
    exact  numeric := abs(f::text::numeric);
    target float8 := abs(f);
    digits int := length(trunc(exact)::text);
    unit   numeric;
    down   numeric;
    up     numeric;
    pick   numeric;
BEGIN
    FOR k IN 1 .. digits LOOP
        unit := power(10::numeric, digits - k);
        down := div(exact, unit) * unit;
        up := CASE WHEN down = exact THEN down ELSE down + unit END;
        IF down::float8 = target AND up::float8 = target THEN
            pick := CASE
                WHEN exact - down < up - exact THEN down
                WHEN exact - down > up - exact THEN up
                WHEN mod(div(down, unit), 2) = 0 THEN down
                ELSE up END;
        ELSIF down::float8 = target THEN
            pick := down;
        ELSIF up::float8 = target THEN
            pick := up;
        END IF;
        IF pick IS NOT NULL THEN
            RETURN CASE WHEN f < 0 THEN '-' ELSE '' END || trunc(pick)::text;
        END IF;
    END LOOP;
    RETURN f::text;
END
$$;

-- A JSON number, as RFC 8785 section 3.2.2.3 prints it: the IEEE-754 double
-- nearest the value, in ECMAScript Number.prototype.toString form. Every JSON
-- number means that double (I-JSON), integers beyond 2^53 included: jsonb
-- cannot tell 1e21 from 1000000000000000000000, and neither does JCS.
CREATE FUNCTION jcs_number(n numeric) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
    -- float8 output is the shortest round-tripping form only with extra_float_digits >= 1;
    -- pin it so no session setting can change a hash.
    SET extra_float_digits = 1
AS $$
DECLARE
    f        float8;
    s        text;
    neg      boolean;
    mantissa text;
    exponent int := 0;
    int_part text;
    digits   text;
    k        int;   -- number of significant digits
    p        int;   -- position of the decimal point: value = 0.digits * 10^p
    lead     int;
BEGIN
    IF n = 0 THEN
        RETURN '0';  -- also -0, which JCS prints as 0
    END IF;
    -- Integers a double holds exactly print as plain digits (all are below 1e21).
    IF n = trunc(n) AND abs(n) <= 9007199254740991 THEN
        RETURN trunc(n)::text;
    END IF;
    BEGIN
        f := n::float8;
    EXCEPTION WHEN numeric_value_out_of_range THEN
        RAISE EXCEPTION 'JSON number % is outside the range of an IEEE-754 double, which RFC 8785 requires', n
            USING ERRCODE = 'numeric_value_out_of_range';
    END;

    s := f::text;                         -- e.g. 1e+21, 1e-07, 0.1, 1.2345678901234567e+25
    IF f = trunc(f) AND abs(f) >= 9007199254740992 AND abs(f) < 1e21 THEN
        -- PostgreSQL prints some integral doubles (seen below 2^63) as their exact
        -- value, 2.2517997598961672e+16, where the shortest is 2.251799759896167e+16.
        s := jcs_shortest_integral(f);
    END IF;
    neg := left(s, 1) = '-';
    IF neg THEN
        s := substr(s, 2);
    END IF;
    IF position('e' IN s) > 0 THEN
        mantissa := split_part(s, 'e', 1);
        exponent := split_part(s, 'e', 2)::int;
    ELSE
        mantissa := s;
    END IF;
    int_part := split_part(mantissa, '.', 1);
    digits := int_part || split_part(mantissa, '.', 2);
    p := length(int_part) + exponent;
    lead := length(digits) - length(ltrim(digits, '0'));
    digits := rtrim(ltrim(digits, '0'), '0');
    p := p - lead;
    k := length(digits);

    IF k <= p AND p <= 21 THEN
        s := digits || repeat('0', p - k);
    ELSIF 0 < p AND p <= 21 THEN
        s := left(digits, p) || '.' || substr(digits, p + 1);
    ELSIF -6 < p AND p <= 0 THEN
        s := '0.' || repeat('0', -p) || digits;
    ELSE
        s := left(digits, 1)
             || CASE WHEN k > 1 THEN '.' || substr(digits, 2) ELSE '' END
             || 'e' || CASE WHEN p - 1 >= 0 THEN '+' ELSE '-' END
             || abs(p - 1)::text;
    END IF;
    RETURN CASE WHEN neg THEN '-' || s ELSE s END;
END
$$;

-- A key as the UTF-16 code units RFC 8785 sorts by. int[] compares element by
-- element, a prefix first, which is exactly that order.
CREATE FUNCTION jcs_utf16_units(k text) RETURNS int[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT coalesce(array_agg(u ORDER BY ord, half), '{}')
    FROM (
        SELECT c.ord, h.half,
               CASE
                   WHEN ascii(c.ch) < 65536 THEN ascii(c.ch)
                   WHEN h.half = 1 THEN 55296 + ((ascii(c.ch) - 65536) >> 10)  -- high surrogate
                   ELSE 56320 + ((ascii(c.ch) - 65536) & 1023)                -- low surrogate
               END AS u
        FROM unnest(string_to_array(k, NULL)) WITH ORDINALITY AS c(ch, ord)
        CROSS JOIN LATERAL generate_series(1, CASE WHEN ascii(c.ch) < 65536 THEN 1 ELSE 2 END) AS h(half)
    ) units
$$;

-- One value. Scalars inside containers are printed inline rather than by a
-- recursive call: most event data is a flat object.
CREATE FUNCTION jcs_value(v jsonb, utf16_keys boolean) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
    out text;
BEGIN
    CASE jsonb_typeof(v)
    WHEN 'object' THEN
        IF utf16_keys THEN
            SELECT string_agg(to_json(e.key)::text || ':' || jcs_member(e.value, true), ','
                              ORDER BY jcs_utf16_units(e.key))
              INTO out FROM jsonb_each(v) AS e;
        ELSE
            SELECT string_agg(to_json(e.key)::text || ':' || jcs_member(e.value, false), ','
                              ORDER BY e.key COLLATE "C")
              INTO out FROM jsonb_each(v) AS e;
        END IF;
        RETURN '{' || coalesce(out, '') || '}';
    WHEN 'array' THEN
        SELECT string_agg(jcs_member(e.value, utf16_keys), ',' ORDER BY e.ord)
          INTO out FROM jsonb_array_elements(v) WITH ORDINALITY AS e(value, ord);
        RETURN '[' || coalesce(out, '') || ']';
    ELSE
        RETURN jcs_member(v, utf16_keys);
    END CASE;
END
$$;

-- A member of a container: scalars here (inlined into the caller's query),
-- containers through jcs_value.
CREATE FUNCTION jcs_member(v jsonb, utf16_keys boolean) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE  -- not STRICT, so the planner inlines it
AS $$
    SELECT CASE jsonb_typeof(v)
        -- jsonb prints strings exactly as RFC 8785 does: \" \\ \b \f \n \r \t,
        -- other controls as lower-case \u00xx, everything else as itself.
        WHEN 'string' THEN v::text
        WHEN 'boolean' THEN v::text
        WHEN 'null' THEN 'null'
        WHEN 'number' THEN CASE
            WHEN v::numeric = trunc(v::numeric) AND abs(v::numeric) <= 9007199254740991
            THEN trunc(v::numeric)::text         -- an integer a double holds exactly
            ELSE jcs_number(v::numeric) END
        ELSE jcs_value(v, utf16_keys)
    END
$$;

-- RFC 8785 canonical JSON text of a jsonb value. jsonb already rejects what
-- JSON cannot say (NaN, Infinity, \u0000, lone surrogates); numbers a double
-- cannot hold are refused by jcs_number.
--
-- Keys: code-point order (UTF-8 bytes under "C") equals RFC 8785's UTF-16
-- order unless a key holds a character at or above U+E000; only a value with
-- such a character anywhere pays for sorting by code units.
CREATE FUNCTION jcs(v jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE  -- not STRICT, so the planner inlines it
AS $$ SELECT jcs_value(v, v::text ~ '[\uE000-\U0010FFFF]') $$;

GRANT EXECUTE ON FUNCTION jcs_number(numeric), jcs_shortest_integral(float8), jcs_utf16_units(text),
    jcs(jsonb), jcs_value(jsonb, boolean), jcs_member(jsonb, boolean)
    TO exceptao_app, exceptao_audit_writer, exceptao_operator;

------------------------------------------------------------------------------
-- Tables
------------------------------------------------------------------------------

CREATE TABLE audit_log (
    tenant_id      uuid NOT NULL REFERENCES tenant (id),
    seq            bigint NOT NULL CHECK (seq >= 1),
    occurred_at    timestamptz NOT NULL,
    actor          text NOT NULL CHECK (actor ~ '^(user|system|vendor):[A-Za-z0-9_.:-]+$'),
    action         text NOT NULL CHECK (action ~ '^[a-z][a-z0-9_]*:[a-z][a-z0-9_]*:[a-z][a-z0-9_]*$'),
    target_type    text CHECK (length(target_type) BETWEEN 1 AND 100),
    target_id      text CHECK (length(target_id) BETWEEN 1 AND 200),
    data           jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(data) = 'object'),
    pii_commitment bytea CHECK (length(pii_commitment) = 32),
    hash_v         smallint NOT NULL CHECK (hash_v = 1),
    prev_hash      bytea NOT NULL CHECK (length(prev_hash) = 32),
    row_hash       bytea NOT NULL CHECK (length(row_hash) = 32),
    PRIMARY KEY (tenant_id, seq),
    -- Two rows claiming one predecessor: a fork fails loudly. prev_hash leads so
    -- this index never looks like a (tenant_id, ...) index to the planner: without
    -- statistics it chose it for audit_pii's foreign-key check, scanning the chain.
    UNIQUE (prev_hash, tenant_id),
    CHECK ((target_type IS NULL) = (target_id IS NULL))
);

-- Personal data of an event, outside the chain. The chain holds only
-- pii = SHA-256(salt || UTF-8(JCS({"email","ip","ua"}))). Erasure replaces
-- email and ip with a tombstone and destroys the salt.
CREATE TABLE audit_pii (
    tenant_id  uuid NOT NULL,
    seq        bigint NOT NULL,
    salt       bytea CHECK (length(salt) = 32),
    email      text,
    ip         text,
    user_agent text,
    PRIMARY KEY (tenant_id, seq),
    FOREIGN KEY (tenant_id, seq) REFERENCES audit_log (tenant_id, seq)
);

-- Chain heads recorded by the anchoring job and timestamped by an RFC 3161 authority.
CREATE TABLE audit_anchor (
    tenant_id   uuid NOT NULL REFERENCES tenant (id),
    seq         bigint NOT NULL,
    row_hash    bytea NOT NULL CHECK (length(row_hash) = 32),
    anchored_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    tsa_token   bytea,
    PRIMARY KEY (tenant_id, anchored_at)
);

ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_log FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_log
    USING (tenant_id = app_current_tenant())
    WITH CHECK (tenant_id = app_current_tenant());
ALTER TABLE audit_pii ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_pii FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_pii
    USING (tenant_id = app_current_tenant())
    WITH CHECK (tenant_id = app_current_tenant());
ALTER TABLE audit_anchor ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_anchor FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_anchor
    USING (tenant_id = app_current_tenant())
    WITH CHECK (tenant_id = app_current_tenant());

------------------------------------------------------------------------------
-- The record and the chain trigger
------------------------------------------------------------------------------

-- The v1 record, given its data already in canonical form.
CREATE FUNCTION audit_record_text(
    p_tenant uuid, p_seq bigint, p_at timestamptz, p_actor text, p_action text,
    p_target_type text, p_target_id text, p_data_jcs text, p_pii bytea
) RETURNS text
    -- STABLE as to_char is: an IMMUTABLE body calling it would not be inlined,
    -- and a SQL function that is not inlined is planned on every call.
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    -- Keys in RFC 8785 order: action, actor, at, data, pii, seq, target, tenant, v.
    SELECT '{"action":' || to_json(p_action)::text
        || ',"actor":' || to_json(p_actor)::text
        || ',"at":"' || to_char(p_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '"'
        || ',"data":' || p_data_jcs
        || ',"pii":' || coalesce('"' || encode(p_pii, 'hex') || '"', 'null')
        || ',"seq":' || p_seq::text
        || ',"target":' || CASE WHEN p_target_type IS NULL THEN 'null'
                                ELSE '{"id":' || to_json(p_target_id)::text
                                     || ',"type":' || to_json(p_target_type)::text || '}' END
        || ',"tenant":"' || p_tenant::text || '"'
        || ',"v":1}'
$$;

-- JCS(record) of an audit_log row, for anyone checking a row inside the database.
CREATE FUNCTION audit_record_jcs(l audit_log) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT audit_record_text(l.tenant_id, l.seq, l.occurred_at, l.actor, l.action,
                             l.target_type, l.target_id, jcs(l.data), l.pii_commitment)
$$;
GRANT EXECUTE ON FUNCTION audit_record_text(uuid, bigint, timestamptz, text, text, text, text, text, bytea),
    audit_record_jcs(audit_log)
    TO exceptao_app, exceptao_operator;

CREATE FUNCTION audit_chain_link() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
    last_seq  bigint;
    last_hash bytea;
    last_at   timestamptz;
    data_jcs  text;
BEGIN
    IF NEW.tenant_id IS NULL OR NEW.tenant_id IS DISTINCT FROM app_current_tenant() THEN
        RAISE EXCEPTION 'audit events are appended to the tenant of the current transaction only'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- Appends of one tenant queue here, until the appending transaction ends;
    -- other tenants take other locks. Taken before the clock is read, so
    -- occurred_at follows seq.
    -- Canonicalise the data before queueing: the queue holds only what needs seq.
    NEW.data := coalesce(NEW.data, '{}'::jsonb);
    data_jcs := jcs(NEW.data);
    PERFORM pg_advisory_xact_lock(1096107332, hashtext(NEW.tenant_id::text));

    -- A new snapshot per statement under READ COMMITTED: this sees the head
    -- committed by whoever held the lock before, and earlier rows of this transaction.
    SELECT l.seq, l.row_hash, l.occurred_at INTO last_seq, last_hash, last_at
      FROM audit_log AS l
     WHERE l.tenant_id = NEW.tenant_id
     ORDER BY l.seq DESC
     LIMIT 1;

    IF last_seq IS NULL THEN
        NEW.seq := 1;
        NEW.prev_hash := decode(repeat('00', 32), 'hex');
        NEW.occurred_at := clock_timestamp();
    ELSE
        NEW.seq := last_seq + 1;
        NEW.prev_hash := last_hash;
        NEW.occurred_at := greatest(clock_timestamp(), last_at);
    END IF;
    NEW.hash_v := 1;
    NEW.row_hash := sha256(NEW.prev_hash || convert_to(
        audit_record_text(NEW.tenant_id, NEW.seq, NEW.occurred_at, NEW.actor, NEW.action,
                          NEW.target_type, NEW.target_id, data_jcs, NEW.pii_commitment),
        'UTF8'));
    RETURN NEW;
END
$$;

CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_chain_link();
ALTER TABLE audit_log ENABLE ALWAYS TRIGGER audit_log_chain;

------------------------------------------------------------------------------
-- Append-only, for every role
------------------------------------------------------------------------------

CREATE FUNCTION audit_refuse_change() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION '% on % is refused: the audit trail is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

-- Statement-level, so even a statement that matches no row is refused loudly.
-- ENABLE ALWAYS: session_replication_role = replica does not silence them.
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
ALTER TABLE audit_log ENABLE ALWAYS TRIGGER audit_log_append_only;
CREATE TRIGGER audit_anchor_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_anchor
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
ALTER TABLE audit_anchor ENABLE ALWAYS TRIGGER audit_anchor_append_only;
CREATE TRIGGER audit_pii_keep BEFORE DELETE OR TRUNCATE ON audit_pii
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
ALTER TABLE audit_pii ENABLE ALWAYS TRIGGER audit_pii_keep;

-- The one change audit_pii allows is erasure: email and ip become a tombstone,
-- the user agent goes, and the salt is destroyed.
CREATE FUNCTION audit_pii_erasure_only() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    IF NEW.tenant_id = OLD.tenant_id AND NEW.seq = OLD.seq
       AND NEW.salt IS NULL
       AND NEW.email ~ '^actor_tombstone_[0-9a-f-]{36}$'
       AND (NEW.ip IS NULL OR NEW.ip = NEW.email)
       AND NEW.user_agent IS NULL THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_pii may only be erased (tombstone, no salt), not edited'
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_pii_erasure_only BEFORE UPDATE ON audit_pii
    FOR EACH ROW EXECUTE FUNCTION audit_pii_erasure_only();
ALTER TABLE audit_pii ENABLE ALWAYS TRIGGER audit_pii_erasure_only;

------------------------------------------------------------------------------
-- The one way in: audit_append, owned by audit_writer
------------------------------------------------------------------------------
--
-- An event recorded in a transaction waits in audit_pending until that
-- transaction commits; a deferred trigger then moves it into audit_log, whose
-- BEFORE INSERT trigger links it. The tenant's append lock is so taken at
-- commit, not at the first event: it is held for the commit alone, never
-- across the application's round trips, which is what lets one tenant's
-- chain take thousands of appends a second. seq order is commit order.

CREATE UNLOGGED TABLE audit_pending (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id      uuid NOT NULL,
    actor          text NOT NULL CHECK (actor ~ '^(user|system|vendor):[A-Za-z0-9_.:-]+$'),
    action         text NOT NULL CHECK (action ~ '^[a-z][a-z0-9_]*:[a-z][a-z0-9_]*:[a-z][a-z0-9_]*$'),
    target_type    text CHECK (length(target_type) BETWEEN 1 AND 100),
    target_id      text CHECK (length(target_id) BETWEEN 1 AND 200),
    data           jsonb NOT NULL CHECK (jsonb_typeof(data) = 'object'),
    pii_commitment bytea,
    salt           bytea,
    email          text,
    ip             text,
    user_agent     text,
    CHECK ((target_type IS NULL) = (target_id IS NULL))
);
ALTER TABLE audit_pending ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_pending FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_pending
    USING (tenant_id = app_current_tenant())
    WITH CHECK (tenant_id = app_current_tenant());

GRANT INSERT, SELECT, DELETE ON audit_pending TO exceptao_audit_writer;
GRANT INSERT ON audit_log, audit_pii TO exceptao_audit_writer;
GRANT SELECT (tenant_id, seq) ON audit_log TO exceptao_audit_writer;  -- for RETURNING seq

CREATE FUNCTION audit_append(
    p_actor text, p_action text, p_target_type text, p_target_id text,
    p_data jsonb, p_pii jsonb, p_salt bytea
) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
    t          uuid := app_current_tenant();
    commitment bytea;
BEGIN
    IF t IS NULL THEN
        RAISE EXCEPTION 'no tenant is set for this transaction' USING ERRCODE = 'insufficient_privilege';
    END IF;
    p_data := coalesce(p_data, '{}'::jsonb);
    -- Data JCS cannot represent is refused by the chain trigger at commit, and
    -- the whole transaction with it; app.audit.record refuses it before sending.
    IF p_pii IS NOT NULL THEN
        IF jsonb_typeof(p_pii) <> 'object'
           OR EXISTS (SELECT FROM jsonb_each(p_pii) AS e
                       WHERE e.key NOT IN ('email', 'ip', 'ua')
                          OR jsonb_typeof(e.value) NOT IN ('string', 'null')) THEN
            RAISE EXCEPTION 'pii must be an object of email, ip and ua strings'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF p_salt IS NULL OR length(p_salt) <> 32 THEN
            RAISE EXCEPTION 'pii needs a 32-byte salt' USING ERRCODE = 'invalid_parameter_value';
        END IF;
        commitment := sha256(p_salt || convert_to(jcs(jsonb_build_object(
            'email', coalesce(p_pii -> 'email', 'null'::jsonb),
            'ip', coalesce(p_pii -> 'ip', 'null'::jsonb),
            'ua', coalesce(p_pii -> 'ua', 'null'::jsonb))), 'UTF8'));
    END IF;
    INSERT INTO audit_pending (tenant_id, actor, action, target_type, target_id, data,
                               pii_commitment, salt, email, ip, user_agent)
    VALUES (t, p_actor, p_action, p_target_type, p_target_id, p_data, commitment,
            CASE WHEN p_pii IS NOT NULL THEN p_salt END,
            p_pii ->> 'email', p_pii ->> 'ip', p_pii ->> 'ua');
END
$$;

-- At commit, in the order they were recorded: into the chain, then gone from here.
CREATE FUNCTION audit_seal() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
    new_seq bigint;
BEGIN
    -- Deleted first: the insert below takes the tenant's lock, held until commit.
    DELETE FROM audit_pending WHERE id = NEW.id;
    INSERT INTO audit_log (tenant_id, actor, action, target_type, target_id, data, pii_commitment)
    VALUES (NEW.tenant_id, NEW.actor, NEW.action, NEW.target_type, NEW.target_id, NEW.data, NEW.pii_commitment)
    RETURNING seq INTO new_seq;
    IF NEW.pii_commitment IS NOT NULL THEN
        INSERT INTO audit_pii (tenant_id, seq, salt, email, ip, user_agent)
        VALUES (NEW.tenant_id, new_seq, NEW.salt, NEW.email, NEW.ip, NEW.user_agent);
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER audit_pending_seal AFTER INSERT ON audit_pending
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION audit_seal();
ALTER TABLE audit_pending ENABLE ALWAYS TRIGGER audit_pending_seal;

-- A new owner needs CREATE on the schema at the moment of the hand-over, not after.
GRANT CREATE ON SCHEMA public TO exceptao_audit_writer;
ALTER FUNCTION audit_append(text, text, text, text, jsonb, jsonb, bytea) OWNER TO exceptao_audit_writer;
ALTER FUNCTION audit_seal() OWNER TO exceptao_audit_writer;
REVOKE CREATE ON SCHEMA public FROM exceptao_audit_writer;
GRANT EXECUTE ON FUNCTION audit_append(text, text, text, text, jsonb, jsonb, bytea) TO exceptao_app;

-- Readers: the app verifies its own tenant's chain; the operator reads across tenants.
GRANT SELECT ON audit_log, audit_pii, audit_anchor TO exceptao_app, exceptao_operator;
