-- Single logout. Sessions gain the columns an upstream's logout finds them
-- by (of their connector: the upstream account, the upstream session),
-- filled from the JSON of the sessions already stored, with partial indexes
-- on them; deliveries is the outbox of back-channel logout messages, due
-- the next time one may be sent (Unix nanoseconds), data its JSON (whose
-- own due and attempts the columns override).

ALTER TABLE sessions ADD COLUMN connector_id TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN upstream_sub TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN upstream_sid TEXT NOT NULL DEFAULT '';
UPDATE sessions SET
	connector_id = coalesce(json_extract(CAST(data AS TEXT), '$.connector_id'), ''),
	upstream_sub = coalesce(json_extract(CAST(data AS TEXT), '$.grant.upstream_sub'), ''),
	upstream_sid = coalesce(json_extract(CAST(data AS TEXT), '$.upstream_sid'), '')
WHERE json_valid(CAST(data AS TEXT)) AND json_type(CAST(data AS TEXT)) = 'object';
CREATE INDEX sessions_upstream_sub ON sessions (connector_id, upstream_sub) WHERE upstream_sub <> '';
CREATE INDEX sessions_upstream_sid ON sessions (connector_id, upstream_sid) WHERE upstream_sid <> '';

CREATE TABLE deliveries (
	id       TEXT PRIMARY KEY,
	due      INTEGER NOT NULL,
	attempts INTEGER NOT NULL,
	data     BLOB NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (due, id);
