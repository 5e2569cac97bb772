DROP TABLE operator_api_tokens;
DROP TABLE operator_sessions;
DROP TABLE operators;
