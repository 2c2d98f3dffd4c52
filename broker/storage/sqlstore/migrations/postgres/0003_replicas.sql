-- The replica registry: each broker process's heartbeat record (its JSON),
-- until expiry (Unix nanoseconds). Records are ephemeral: not exported,
-- deleted by the garbage collector once expired. Ids sort bytewise
-- (COLLATE "C"), as the other backends order them.

CREATE TABLE replicas (
	id     TEXT COLLATE "C" PRIMARY KEY,
	data   BYTEA NOT NULL,
	expiry BIGINT NOT NULL
);
CREATE INDEX replicas_expiry ON replicas (expiry);
