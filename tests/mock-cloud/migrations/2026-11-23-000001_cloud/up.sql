-- The mock cloud's store. Times are UTC seconds since the epoch.

-- This cloud: one row.
CREATE TABLE cloud (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    cloud_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- Seconds added to the system clock when the manual test clock is on.
    clock_offset BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE accounts (
    id INTEGER PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    export_controlled BOOLEAN NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE virtual_accounts (
    id INTEGER PRIMARY KEY NOT NULL,
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);

CREATE TABLE licenses (
    id INTEGER PRIMARY KEY NOT NULL,
    va_id INTEGER NOT NULL REFERENCES virtual_accounts (id),
    tag TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL CHECK (kind IN ('perpetual', 'term', 'demo', 'reporting-only')),
    quantity BIGINT NOT NULL CHECK (quantity >= 0),
    start_at BIGINT,
    end_at BIGINT,
    restricted BOOLEAN NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

-- One row per registration request received; the newest authorized row of a satellite id
-- is that satellite.
CREATE TABLE satellites (
    id INTEGER PRIMARY KEY NOT NULL,
    satellite_id TEXT NOT NULL,
    request_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    hostname TEXT NOT NULL,
    software_version TEXT NOT NULL,
    public_key_pem TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'authorized', 'removed')),
    account_id INTEGER REFERENCES accounts (id),
    certificate_pem TEXT,
    -- The authorization bundle, for the satellite (network) or the operator to fetch again.
    authorization BLOB,
    created_at BIGINT NOT NULL,
    authorized_at BIGINT,
    last_sync_at BIGINT
);
CREATE INDEX satellites_satellite_id ON satellites (satellite_id);

CREATE TABLE satellite_vas (
    satellite_row INTEGER NOT NULL REFERENCES satellites (id),
    va_id INTEGER NOT NULL REFERENCES virtual_accounts (id),
    PRIMARY KEY (satellite_row, va_id)
);
