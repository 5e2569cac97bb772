DROP INDEX license_usage_tag;
CREATE INDEX license_usage_tag ON license_usage (tag, requested_at);
DROP INDEX product_instances_contact;
