-- The fedbroker storage schema on SQLite. Times are Unix nanoseconds
-- (0: none); secrets appear only as storage.Hash (base64url SHA-256);
-- records are JSON. Every table with an expiry has an index on it for the
-- garbage collector.

CREATE TABLE auth_requests (
	id     TEXT PRIMARY KEY,
	data   BLOB NOT NULL,
	expiry INTEGER NOT NULL
);
CREATE INDEX auth_requests_expiry ON auth_requests (expiry);

CREATE TABLE codes (
	hash   TEXT PRIMARY KEY,
	data   BLOB NOT NULL,
	expiry INTEGER NOT NULL,
	used   INTEGER NOT NULL DEFAULT 0 -- redemptions so far
);
CREATE INDEX codes_expiry ON codes (expiry);

-- A refresh family, or after a revocation its tombstone: cur NULL, every
-- column but id and expires NULL, expires the tombstone's end.
CREATE TABLE refresh_families (
	id          TEXT PRIMARY KEY,
	expires     INTEGER NOT NULL, -- a family: min(idle_expiry, abs_expiry)
	subject     TEXT,
	grant_data  BLOB,
	created_at  INTEGER,
	last_used   INTEGER,
	idle_expiry INTEGER,
	abs_expiry  INTEGER,
	cur         TEXT,            -- Hash of the current token
	gen         INTEGER,         -- rotations so far
	prev        TEXT,            -- Hash of the token the last rotation replaced
	rotated     INTEGER,         -- when (the caller's clock)
	sealed_next BLOB             -- its successor, sealed by the broker
);
CREATE INDEX refresh_families_expires ON refresh_families (expires);
CREATE INDEX refresh_families_subject ON refresh_families (subject) WHERE subject IS NOT NULL;

CREATE TABLE sessions (
	hash    TEXT PRIMARY KEY,
	subject TEXT NOT NULL,
	data    BLOB NOT NULL,
	expiry  INTEGER NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expiry);
CREATE INDEX sessions_subject ON sessions (subject);

CREATE TABLE keyset (
	slot    INTEGER PRIMARY KEY CHECK (slot = 1),
	data    BLOB NOT NULL,
	version INTEGER NOT NULL
);

CREATE TABLE leases (
	name   TEXT PRIMARY KEY,
	holder TEXT NOT NULL,
	expiry INTEGER NOT NULL
);

CREATE TABLE seen (
	namespace TEXT NOT NULL,
	id        TEXT NOT NULL,
	until     INTEGER NOT NULL,
	PRIMARY KEY (namespace, id)
);
CREATE INDEX seen_until ON seen (until);

CREATE TABLE links (
	link_key TEXT PRIMARY KEY,
	data     BLOB NOT NULL
);

-- The storage epoch (see epoch.go): one row.
CREATE TABLE epoch (
	slot     INTEGER PRIMARY KEY CHECK (slot = 1),
	id       TEXT NOT NULL,
	since_ns INTEGER NOT NULL,
	n        INTEGER NOT NULL
);
