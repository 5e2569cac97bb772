-- The timers find silent devices through this index instead of reading every device:
-- active devices by last contact, oldest first.
CREATE INDEX product_instances_contact ON product_instances (state, last_contact_at);

-- A pool is recomputed in pages of its queue, (requested_at, pi_id) after the last row
-- seen: the index carries both, so many devices asking in the same second stay linear.
DROP INDEX license_usage_tag;
CREATE INDEX license_usage_tag ON license_usage (tag, requested_at, pi_id);

-- Note for later migrations: a large sync response swaps in a rebuilt `licenses` table
-- whose index is named licenses_va_tag or licenses_va_tag_b in turn (docs/sync.md): drop
-- both names (IF EXISTS) before changing it.
