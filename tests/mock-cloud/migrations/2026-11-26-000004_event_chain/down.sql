DROP TABLE event_chain_breaks;
ALTER TABLE satellite_events DROP COLUMN hash;
ALTER TABLE satellite_events DROP COLUMN prev_hash;
