ALTER TABLE satellites DROP COLUMN removal_reason;
