ALTER TABLE satellites ADD COLUMN renewed_key_pem TEXT;
