-- Whether this satellite serves the virtual account: a registration again leaves it with exactly
-- the virtual accounts of the new authorization; the others keep their devices and history.
ALTER TABLE virtual_accounts ADD COLUMN served BOOLEAN NOT NULL DEFAULT 1;
