DROP TABLE shortages;
DROP TABLE satellite_events;
DROP TABLE syncs;
DROP TABLE pi_usage;
DROP TABLE product_instances;
ALTER TABLE satellites DROP COLUMN removed_at;
ALTER TABLE satellites DROP COLUMN next_sync_due;
