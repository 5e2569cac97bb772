-- Sync: product instances and their usage as satellites report them (and devices
-- registered directly), the syncs processed, satellites' events, shortages flagged.

ALTER TABLE satellites ADD COLUMN next_sync_due BIGINT;
ALTER TABLE satellites ADD COLUMN removed_at BIGINT;

CREATE TABLE product_instances (
    id INTEGER PRIMARY KEY NOT NULL,
    uuid TEXT NOT NULL UNIQUE,
    -- The satellite row that reports it; NULL for a device registered directly.
    satellite_row INTEGER REFERENCES satellites (id),
    va_id INTEGER NOT NULL REFERENCES virtual_accounts (id),
    pid TEXT NOT NULL,
    sn TEXT NOT NULL,
    name TEXT NOT NULL,
    registered_at BIGINT NOT NULL,
    last_contact_at BIGINT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('active', 'removed')),
    updated_at BIGINT NOT NULL
);
CREATE INDEX product_instances_udi ON product_instances (pid, sn);
CREATE INDEX product_instances_satellite ON product_instances (satellite_row);

CREATE TABLE pi_usage (
    pi_id INTEGER NOT NULL REFERENCES product_instances (id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    count BIGINT NOT NULL CHECK (count >= 0),
    PRIMARY KEY (pi_id, tag)
);

-- Each sync request processed and the response made; AUTOINCREMENT: the id is the
-- response's sequence number, increasing across every satellite and never reused.
CREATE TABLE syncs (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    satellite_row INTEGER NOT NULL REFERENCES satellites (id),
    request_id TEXT NOT NULL UNIQUE,
    response_id TEXT NOT NULL,
    response BLOB NOT NULL,
    received_at BIGINT NOT NULL,
    full BOOLEAN NOT NULL,
    records BIGINT NOT NULL,
    rejected BIGINT NOT NULL
);

CREATE TABLE satellite_events (
    satellite_row INTEGER NOT NULL REFERENCES satellites (id),
    event_id BIGINT NOT NULL,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (satellite_row, event_id)
);

-- Insufficient licenses per VA and entitlement, as of the last sync.
CREATE TABLE shortages (
    va_id INTEGER NOT NULL REFERENCES virtual_accounts (id),
    tag TEXT NOT NULL,
    purchased BIGINT NOT NULL,
    in_use BIGINT NOT NULL,
    flagged_at BIGINT NOT NULL,
    PRIMARY KEY (va_id, tag)
);
