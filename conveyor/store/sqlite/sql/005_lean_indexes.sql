-- Conveyor schema, version 5 (SQLite): fewer index writes per operation.
--
-- Every index that holds a changed column is written on each status change: the
-- operation's claim and its outcome each moved it in the index of every status, in the
-- index of running operations by worker, and its job twice in the index of job statuses.
-- Without those three indexes the store's claim+complete cycle ran 20-30 % faster. So:
-- * operations lose the index of every status: waiting ones are read through
--   operations_ready, running ones through operations_leases (partial indexes the hot path
--   writes anyway), and the dead ones, which replay looks for, get one of their own that
--   the hot path never enters;
-- * the index of running operations by worker goes: the leases of a gone worker are found
--   among the running ones (operations_leases);
-- * jobs lose the index of their status: only marking jobs running read it, and that
--   finds its rows by id. Listings by status read jobs newest first by id, as before.
-- And each operation records how many operations its job has (job_ops): a job of one
-- operation takes its operation's end directly, without deriving it again from all of
-- its operations. Rows written before this version have 0 and are derived as before.

DROP INDEX IF EXISTS operations_status;
DROP INDEX IF EXISTS operations_worker;
DROP INDEX IF EXISTS jobs_status;
CREATE INDEX IF NOT EXISTS operations_dead ON operations (seq) WHERE status = 'dead';
ALTER TABLE operations ADD COLUMN job_ops INTEGER NOT NULL DEFAULT 0;
