ALTER TABLE satellite DROP COLUMN cloud_ca_previous_pem;
