-- Single logout. Sessions gain the columns an upstream's logout finds them
-- by (of their connector: the upstream account, the upstream session),
-- filled from the JSON of the sessions already stored (a row that is not
-- JSON keeps them empty), with partial indexes on them; deliveries is the
-- outbox of back-channel logout messages, due the next time one may be
-- sent (Unix nanoseconds), data its JSON (whose own due and attempts the
-- columns override).

ALTER TABLE sessions ADD COLUMN connector_id TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN upstream_sub TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN upstream_sid TEXT NOT NULL DEFAULT '';
DO $$
DECLARE
	r RECORD;
	j JSONB;
BEGIN
	BEGIN
		UPDATE sessions SET
			connector_id = coalesce(convert_from(data, 'UTF8')::jsonb ->> 'connector_id', ''),
			upstream_sub = coalesce(convert_from(data, 'UTF8')::jsonb -> 'grant' ->> 'upstream_sub', ''),
			upstream_sid = coalesce(convert_from(data, 'UTF8')::jsonb ->> 'upstream_sid', '');
	EXCEPTION WHEN others THEN
		-- Some row is not a JSON object: fill the others one by one.
		FOR r IN SELECT hash, data FROM sessions LOOP
			BEGIN
				j := convert_from(r.data, 'UTF8')::jsonb;
				UPDATE sessions SET
					connector_id = coalesce(j ->> 'connector_id', ''),
					upstream_sub = coalesce(j -> 'grant' ->> 'upstream_sub', ''),
					upstream_sid = coalesce(j ->> 'upstream_sid', '')
				WHERE hash = r.hash;
			EXCEPTION WHEN others THEN
				NULL;
			END;
		END LOOP;
	END;
END
$$;
CREATE INDEX sessions_upstream_sub ON sessions (connector_id, upstream_sub) WHERE upstream_sub <> '';
CREATE INDEX sessions_upstream_sid ON sessions (connector_id, upstream_sid) WHERE upstream_sid <> '';

CREATE TABLE deliveries (
	id       TEXT PRIMARY KEY,
	due      BIGINT NOT NULL,
	attempts BIGINT NOT NULL,
	data     BYTEA NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (due, id);
