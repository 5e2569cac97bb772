ALTER TABLE satellites ADD COLUMN removal_reason TEXT;
