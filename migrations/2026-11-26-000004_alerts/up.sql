-- Alerts that come in warning periods (Licenses Expiring at 90, 60, 30, 14, 7, 3 and 1 days;
-- Product Instance Failed to Connect at 30 and 60 days): what the alert is about, so a new
-- warning replaces the one before, and which period raised it, so a dismissed warning is not
-- raised again in the same period. Who dismissed an alert: an operator, or "system" when a
-- newer warning replaced it.
ALTER TABLE alerts ADD COLUMN subject TEXT;
ALTER TABLE alerts ADD COLUMN period TEXT;
ALTER TABLE alerts ADD COLUMN dismissed_by TEXT;
CREATE INDEX alerts_kind_subject ON alerts (kind, subject);
CREATE INDEX alerts_state ON alerts (state, kind);
