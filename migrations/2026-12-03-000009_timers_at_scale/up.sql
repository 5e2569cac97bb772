-- The timers find silent devices through this index instead of reading every device:
-- active devices by last contact, oldest first.
CREATE INDEX product_instances_contact ON product_instances (state, last_contact_at);

-- A pool is recomputed in pages of its queue, (requested_at, pi_id) after the last row
-- seen: the index carries both, so many devices asking in the same second stay linear.
DROP INDEX license_usage_tag;
CREATE INDEX license_usage_tag ON license_usage (tag, requested_at, pi_id);
