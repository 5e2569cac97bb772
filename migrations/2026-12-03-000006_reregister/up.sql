-- A device's identity belongs to its key: an active product instance registers again only
-- with its current key's signature, or until this time, when an operator let it through.
ALTER TABLE product_instances ADD COLUMN reregister_allowed_until BIGINT;
