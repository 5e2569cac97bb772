-- Synchronization with the cloud: the change sequence, the state of the exchange, and what
-- the cloud refused.

-- The clock reading when the high-water mark was last counted: while the clock is behind
-- the mark, the deadlines' time advances by what the clock advances from the mark.
ALTER TABLE clock_state ADD COLUMN last_clock BIGINT NOT NULL DEFAULT 0;

-- One row: where the exchange with the cloud stands.
CREATE TABLE sync_state (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    -- The last change number given out (see product_instances.change_seq).
    change_seq BIGINT NOT NULL DEFAULT 0,
    -- The cloud knows every change up to this number, and every event up to this id.
    acked_change BIGINT NOT NULL DEFAULT 0,
    acked_event_id BIGINT NOT NULL DEFAULT 0,
    -- Sync requests made (the sequence of the next one is this plus one).
    requests_made BIGINT NOT NULL DEFAULT 0,
    -- The last response applied: its bundle id, the cloud's sequence number and its time.
    -- A response with a lower sequence is older and refused (anti-rollback).
    last_response_id TEXT,
    last_response_seq BIGINT NOT NULL DEFAULT 0,
    last_response_created_at BIGINT,
    last_mode TEXT CHECK (last_mode IN ('manual', 'network')),
    -- Network sync attempts that failed in a row, the last error, and when to try again.
    failures BIGINT NOT NULL DEFAULT 0,
    last_failure TEXT,
    last_attempt_at BIGINT,
    next_attempt_at BIGINT
);
INSERT INTO sync_state (id) VALUES (1);

-- The change number of a product instance's last change that the cloud must learn: its
-- registration, move, removal or a change of the licenses it uses. Triggers keep it, so no
-- code path can forget a change. A contact alone (an authorization renewal with the same
-- usage) is not a change.
ALTER TABLE product_instances ADD COLUMN change_seq BIGINT NOT NULL DEFAULT 0;
CREATE INDEX product_instances_change ON product_instances (change_seq);

CREATE TRIGGER pi_change_insert AFTER INSERT ON product_instances
BEGIN
    UPDATE sync_state SET change_seq = change_seq + 1 WHERE id = 1;
    UPDATE product_instances SET change_seq = (SELECT change_seq FROM sync_state WHERE id = 1)
        WHERE id = NEW.id;
END;

CREATE TRIGGER pi_change_update AFTER UPDATE OF va_id, state, name, pid, sn ON product_instances
WHEN OLD.va_id IS NOT NEW.va_id OR OLD.state IS NOT NEW.state OR OLD.name IS NOT NEW.name
    OR OLD.pid IS NOT NEW.pid OR OLD.sn IS NOT NEW.sn
BEGIN
    UPDATE sync_state SET change_seq = change_seq + 1 WHERE id = 1;
    UPDATE product_instances SET change_seq = (SELECT change_seq FROM sync_state WHERE id = 1)
        WHERE id = NEW.id;
END;

CREATE TRIGGER usage_change_insert AFTER INSERT ON license_usage
BEGIN
    UPDATE sync_state SET change_seq = change_seq + 1 WHERE id = 1;
    UPDATE product_instances SET change_seq = (SELECT change_seq FROM sync_state WHERE id = 1)
        WHERE id = NEW.pi_id;
END;

CREATE TRIGGER usage_change_update AFTER UPDATE OF count ON license_usage
WHEN OLD.count IS NOT NEW.count
BEGIN
    UPDATE sync_state SET change_seq = change_seq + 1 WHERE id = 1;
    UPDATE product_instances SET change_seq = (SELECT change_seq FROM sync_state WHERE id = 1)
        WHERE id = NEW.pi_id;
END;

CREATE TRIGGER usage_change_delete AFTER DELETE ON license_usage
BEGIN
    UPDATE sync_state SET change_seq = change_seq + 1 WHERE id = 1;
    UPDATE product_instances SET change_seq = (SELECT change_seq FROM sync_state WHERE id = 1)
        WHERE id = OLD.pi_id;
END;

-- Devices registered before this migration are all changes the cloud has not seen.
UPDATE sync_state SET change_seq = (SELECT COUNT(*) FROM product_instances) WHERE id = 1;
UPDATE product_instances SET change_seq = id
    WHERE id <= (SELECT change_seq FROM sync_state WHERE id = 1);

-- Sync requests: what each covered, so only answers to our own requests are applied.
ALTER TABLE sync_history ADD COLUMN full BOOLEAN NOT NULL DEFAULT 0;
ALTER TABLE sync_history ADD COLUMN to_change BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sync_history ADD COLUMN to_event BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sync_history ADD COLUMN records BIGINT NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX sync_history_bundle_direction ON sync_history (bundle_id, direction);

-- Records the cloud refused in the last response applied; they stay pending (their
-- product instances are sent again) and are shown by `satellite sync status`.
CREATE TABLE sync_rejections (
    id INTEGER PRIMARY KEY NOT NULL,
    pi_uuid TEXT NOT NULL,
    record TEXT NOT NULL,
    reason TEXT NOT NULL,
    response_id TEXT NOT NULL,
    at BIGINT NOT NULL
);
