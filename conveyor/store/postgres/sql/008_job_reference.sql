-- Conveyor schema, version 8 (PostgreSQL): operations.job_id is no longer a foreign key.
--
-- The key's check ran one query per inserted operation (a lookup of its job, which it
-- also locked), planned once per connection and kept. A connection that planned it
-- while jobs was a few pages long, after a vacuum or analyze had counted them (a table
-- never vacuumed is assumed to have at least 10), kept a sequential scan of the whole
-- table for every operation after, until the next analyze of jobs: measured on a fresh database whose empty tables had been vacuumed, 13,000
-- single-job submissions read 63 million rows of jobs, and the Kafka tier took 1,443
-- submissions/s (PostgreSQL at 593 µs of CPU each) against 4,221 (111 µs) without the key.
--
-- The reference still holds by construction: an operation is written only by the
-- statement or transaction that writes its job (insert_new_jobs, insert_jobs with
-- insert_operations in queries.sql), and jobs are never deleted. The SQLite store keeps
-- its key: SQLite checks it through the jobs' primary key directly, with no plan kept.

ALTER TABLE operations DROP CONSTRAINT IF EXISTS operations_job_id_fkey;
