-- Export-controlled (restricted) licenses: each request or return a satellite sent, answered
-- once (the same answer if it comes again), and the restricted licenses locked to devices.

CREATE TABLE export_answers (
    request_id TEXT PRIMARY KEY NOT NULL,
    satellite_row INTEGER NOT NULL REFERENCES satellites (id),
    op TEXT NOT NULL CHECK (op IN ('request', 'return')),
    pi_uuid TEXT NOT NULL,
    tag TEXT NOT NULL,
    count BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('granted', 'denied', 'returned')),
    reason_code TEXT,
    reason TEXT,
    license_name TEXT NOT NULL,
    license_kind TEXT NOT NULL,
    answered_at BIGINT NOT NULL
);

-- A restricted license locked to a device; it counts in the device's (current) VA until
-- released. Locks follow their device when it moves to another VA.
CREATE TABLE export_locks (
    id INTEGER PRIMARY KEY NOT NULL,
    request_id TEXT NOT NULL UNIQUE,
    pi_id INTEGER NOT NULL REFERENCES product_instances (id),
    tag TEXT NOT NULL,
    count BIGINT NOT NULL CHECK (count > 0),
    granted_at BIGINT NOT NULL,
    released_at BIGINT
);
CREATE INDEX export_locks_pi ON export_locks (pi_id, tag);
