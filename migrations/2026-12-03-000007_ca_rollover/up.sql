-- The cloud CA pinned before the last rollover: still trusted until it expires.
ALTER TABLE satellite ADD COLUMN cloud_ca_previous_pem TEXT;
