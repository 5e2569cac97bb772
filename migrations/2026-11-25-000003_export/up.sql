-- Export-controlled (restricted) licenses: what the flow needs beyond the initial table.
--
-- A request row lives queued -> sent -> granted -> delivered -> returned (or -> denied).
-- A return row (direction 'return') names the request it gives back in `return_of` and
-- lives queued -> sent -> returned. A restricted license is held (counted in its VA's pool)
-- while its request row is granted or delivered.
ALTER TABLE export_requests ADD COLUMN return_of INTEGER REFERENCES export_requests (id);
-- The license as the cloud named it in its answer, and its kind (term or perpetual).
ALTER TABLE export_requests ADD COLUMN license_name TEXT;
ALTER TABLE export_requests ADD COLUMN license_kind TEXT;
-- When the cloud's answer was applied, and when the device was given it.
ALTER TABLE export_requests ADD COLUMN answered_at BIGINT;
ALTER TABLE export_requests ADD COLUMN delivered_at BIGINT;
CREATE INDEX export_requests_pi ON export_requests (pi_id, tag);
CREATE INDEX export_requests_state ON export_requests (state);
