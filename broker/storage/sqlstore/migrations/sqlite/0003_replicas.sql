-- The replica registry: each broker process's heartbeat record (its JSON),
-- until expiry (Unix nanoseconds). Records are ephemeral: not exported,
-- deleted by the garbage collector once expired. Ids sort bytewise (the
-- BINARY collation), as the other backends order them.

CREATE TABLE replicas (
	id     TEXT PRIMARY KEY,
	data   BLOB NOT NULL,
	expiry INTEGER NOT NULL
);
CREATE INDEX replicas_expiry ON replicas (expiry);
