ALTER TABLE satellites DROP COLUMN renewed_key_pem;
