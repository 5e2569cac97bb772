-- The satellite's first schema. Times are UTC seconds since the Unix epoch (INTEGER),
-- everywhere. Booleans are INTEGER 0/1. Later changes come as new migrations.

-- The satellite itself: exactly one row, made on first start.
CREATE TABLE satellite (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    -- Our id in bundles (sender/receiver), a UUID.
    satellite_id TEXT NOT NULL,
    name TEXT NOT NULL,
    hostname TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- unregistered: never registered or registration not finished;
    -- pending: the request went to the cloud, waiting for its authorization;
    -- registered: authorized by the cloud; removed: 90 days without sync (kept for audit).
    state TEXT NOT NULL DEFAULT 'unregistered'
        CHECK (state IN ('unregistered', 'pending', 'registered', 'removed')),
    registered_at BIGINT,
    removed_at BIGINT,
    -- The cloud that authorized us, and the smart account it gave us.
    cloud_id TEXT,
    account_name TEXT,
    -- PEM: the cloud's CA we trust (pinned at registration) and our certificate from it.
    cloud_ca_pem TEXT,
    certificate_pem TEXT,
    export_controlled_allowed BOOLEAN NOT NULL DEFAULT 0,
    -- Id of the registration request bundle we last made, so only its answer is accepted.
    registration_request_id TEXT,
    last_sync_at BIGINT,
    next_sync_due_at BIGINT
);

-- Registration requests this satellite made; only their answers are accepted, once each.
CREATE TABLE registration_requests (
    bundle_id TEXT PRIMARY KEY NOT NULL,
    created_at BIGINT NOT NULL,
    -- manual: exported as a file; network: posted to `cloud_url`.
    mode TEXT NOT NULL CHECK (mode IN ('manual', 'network')),
    cloud_url TEXT,
    answered_at BIGINT
);

-- The injectable clock's state, shared by the server and every CLI command.
CREATE TABLE clock_state (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    -- Seconds added to the system clock when `[testing] manual_clock` is on.
    offset_seconds BIGINT NOT NULL DEFAULT 0,
    -- Highest time the satellite has seen; a clock that goes back does not move it.
    high_water BIGINT NOT NULL DEFAULT 0
);
INSERT INTO clock_state (id, offset_seconds, high_water) VALUES (1, 0, 0);

-- Virtual accounts assigned to this satellite by the cloud.
CREATE TABLE virtual_accounts (
    id INTEGER PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);

-- License pool lines per VA, as the cloud last told us.
CREATE TABLE licenses (
    id INTEGER PRIMARY KEY NOT NULL,
    va_id INTEGER NOT NULL REFERENCES virtual_accounts (id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL CHECK (kind IN ('perpetual', 'term', 'demo', 'reporting-only')),
    quantity BIGINT NOT NULL CHECK (quantity >= 0),
    start_at BIGINT,
    end_at BIGINT,
    restricted BOOLEAN NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL
);
CREATE INDEX licenses_va_tag ON licenses (va_id, tag);

-- Product-instance registration tokens. A token is base64url(lookup id || HMAC(key, id));
-- only the lookup id is stored: the HMAC key lives in the data directory (keys/, 0600).
CREATE TABLE registration_tokens (
    -- AUTOINCREMENT: the id of a removed token is never given to another.
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    va_id INTEGER NOT NULL REFERENCES virtual_accounts (id),
    lookup_id TEXT NOT NULL UNIQUE,
    -- The first characters of the token, to recognise it in lists.
    hint TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    max_uses BIGINT,
    uses BIGINT NOT NULL DEFAULT 0,
    export_controlled BOOLEAN NOT NULL DEFAULT 0,
    revoked_at BIGINT
);

-- Devices registered with this satellite.
CREATE TABLE product_instances (
    id INTEGER PRIMARY KEY NOT NULL,
    -- The PI id given to the device.
    uuid TEXT NOT NULL UNIQUE,
    va_id INTEGER NOT NULL REFERENCES virtual_accounts (id),
    -- The UDI: product id and serial number, plus optional identifiers.
    pid TEXT NOT NULL,
    sn TEXT NOT NULL,
    udi_uuid TEXT,
    host_id TEXT,
    mac TEXT,
    name TEXT NOT NULL,
    token_id INTEGER REFERENCES registration_tokens (id) ON DELETE SET NULL,
    export_controlled BOOLEAN NOT NULL DEFAULT 0,
    -- The device's key: `p256:<hex of the point>`, or PEM for other kinds.
    public_key TEXT NOT NULL,
    cert_serial TEXT,
    cert_not_after BIGINT,
    registered_at BIGINT NOT NULL,
    last_contact_at BIGINT NOT NULL,
    -- The device's request counter: each signed request must carry a higher one (replays
    -- are refused).
    last_counter BIGINT NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'removed')),
    removed_at BIGINT,
    UNIQUE (pid, sn)
);
CREATE INDEX product_instances_va ON product_instances (va_id);

-- What each device reports it uses, and the answer it got.
CREATE TABLE license_usage (
    pi_id INTEGER NOT NULL REFERENCES product_instances (id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    count BIGINT NOT NULL CHECK (count >= 0),
    -- When the device first asked for this count: the order used for compliance.
    requested_at BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('AUTHORIZED', 'OUT_OF_COMPLIANCE', 'NOT_FOUND')),
    PRIMARY KEY (pi_id, tag)
);
CREATE INDEX license_usage_tag ON license_usage (tag, requested_at);

-- Running totals per VA and entitlement, kept in the same transactions as license_usage:
-- in_use counts every device's request, authorized those the pool covers.
CREATE TABLE pool_usage (
    va_id INTEGER NOT NULL REFERENCES virtual_accounts (id),
    tag TEXT NOT NULL,
    in_use BIGINT NOT NULL DEFAULT 0 CHECK (in_use >= 0),
    authorized BIGINT NOT NULL DEFAULT 0 CHECK (authorized >= 0),
    PRIMARY KEY (va_id, tag)
);

-- Each sync bundle made or applied.
CREATE TABLE sync_history (
    id INTEGER PRIMARY KEY NOT NULL,
    bundle_id TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('request', 'response')),
    mode TEXT NOT NULL CHECK (mode IN ('manual', 'network')),
    sequence BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    completed_at BIGINT,
    status TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sync_history_bundle ON sync_history (bundle_id);

-- Export-controlled (restricted) license requests and returns, queued for the next sync.
CREATE TABLE export_requests (
    id INTEGER PRIMARY KEY NOT NULL,
    request_uuid TEXT NOT NULL UNIQUE,
    pi_id INTEGER NOT NULL REFERENCES product_instances (id),
    tag TEXT NOT NULL,
    count BIGINT NOT NULL CHECK (count > 0),
    direction TEXT NOT NULL CHECK (direction IN ('request', 'return')),
    state TEXT NOT NULL
        CHECK (state IN ('queued', 'sent', 'granted', 'denied', 'delivered', 'returned')),
    sync_id INTEGER REFERENCES sync_history (id),
    reason TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Alerts for the operator.
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL CHECK (severity IN ('major', 'minor', 'informational')),
    source_type TEXT NOT NULL
        CHECK (source_type IN ('account', 'va', 'pi', 'license', 'satellite')),
    source_id TEXT,
    va_id INTEGER REFERENCES virtual_accounts (id),
    message TEXT NOT NULL,
    action_due_at BIGINT,
    state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'dismissed', 'cleared')),
    remind_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- The event log: append-only, each event chained to the one before by hash.
CREATE TABLE events (
    id INTEGER PRIMARY KEY NOT NULL,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    va_name TEXT,
    pi_uuid TEXT,
    license_tag TEXT,
    message TEXT NOT NULL,
    actor TEXT NOT NULL DEFAULT 'system',
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event log is append-only');
END;
CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event log is append-only');
END;
