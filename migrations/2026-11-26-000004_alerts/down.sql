DROP INDEX alerts_state;
DROP INDEX alerts_kind_subject;
ALTER TABLE alerts DROP COLUMN dismissed_by;
ALTER TABLE alerts DROP COLUMN period;
ALTER TABLE alerts DROP COLUMN subject;
