ALTER TABLE virtual_accounts DROP COLUMN served;
