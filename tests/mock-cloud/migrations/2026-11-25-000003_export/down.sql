DROP TABLE export_locks;
DROP TABLE export_answers;
