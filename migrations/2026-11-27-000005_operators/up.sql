-- Operator access: accounts with a role, browser sessions and API tokens for scripts.
-- Passwords are stored as argon2id PHC strings; session ids and API tokens only as the
-- SHA-256 of the secret the client holds, so a copy of the database opens no session.
CREATE TABLE operators (
    id INTEGER PRIMARY KEY NOT NULL,
    username TEXT NOT NULL UNIQUE,
    -- admin, operator or auditor
    role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'auditor')),
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    password_changed_at BIGINT NOT NULL,
    last_login_at BIGINT
);

CREATE TABLE operator_sessions (
    id_hash TEXT PRIMARY KEY NOT NULL,
    operator_id INTEGER NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    -- The form token of this session (synchronizer-token CSRF protection).
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX operator_sessions_operator ON operator_sessions (operator_id);

CREATE TABLE operator_api_tokens (
    id INTEGER PRIMARY KEY NOT NULL,
    operator_id INTEGER NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    description TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    last_used_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX operator_api_tokens_operator ON operator_api_tokens (operator_id);
