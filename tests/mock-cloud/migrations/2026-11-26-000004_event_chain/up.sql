-- The satellites' event chains: each event's hashes, and where a chain was found broken (an
-- event edited, removed or inserted at the satellite after it was written).
ALTER TABLE satellite_events ADD COLUMN prev_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE satellite_events ADD COLUMN hash TEXT NOT NULL DEFAULT '';

CREATE TABLE event_chain_breaks (
    id INTEGER PRIMARY KEY NOT NULL,
    satellite_row INTEGER NOT NULL REFERENCES satellites (id),
    event_id BIGINT NOT NULL,
    reason TEXT NOT NULL,
    detected_at BIGINT NOT NULL,
    UNIQUE (satellite_row, event_id, reason)
);
