-- The timers find silent devices through this index instead of reading every device:
-- active devices by last contact, oldest first.
CREATE INDEX product_instances_contact ON product_instances (state, last_contact_at);
