DROP INDEX export_requests_state;
DROP INDEX export_requests_pi;
ALTER TABLE export_requests DROP COLUMN delivered_at;
ALTER TABLE export_requests DROP COLUMN answered_at;
ALTER TABLE export_requests DROP COLUMN license_kind;
ALTER TABLE export_requests DROP COLUMN license_name;
ALTER TABLE export_requests DROP COLUMN return_of;
