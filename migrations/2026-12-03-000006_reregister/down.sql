ALTER TABLE product_instances DROP COLUMN reregister_allowed_until;
