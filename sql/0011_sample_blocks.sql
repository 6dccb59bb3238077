-- Every series' samples of a 10-minute window, packed (store/sqlite/blocks.py), written
-- behind the writer for the query API: a range query reads one row per series and window
-- instead of picking its series out of every series' samples by time (bench W9). `samples`
-- stays what it was: the Worker's view, the purge and deletions work on it, and the blocks
-- follow it.
--  * times: int32 little-endian seconds after `start`; vals: float64 little-endian.
--  * store_state.blocks_upto: every sample below it is in sample_blocks exactly as it is in
--    samples (readers take blocks below it, clipped to it, and samples from it on); rows
--    of windows at or above it may be leftovers, which readers ignore and the builder
--    replaces.
--  * blocks_frozen_to (>= blocks_upto): samples below it are in the blocks or being read
--    for them; any change below it (a late push, a deletion) lowers blocks_upto to its
--    window and bumps blocks_epoch, so that blocks read before are refused. (Deleting from
--    `samples` directly bypasses this: delete through the `metrics` view or delete_series.)
--  * blocks_kept_from: the retention purge's cutoff; samples below it are gone from
--    `samples`, and readers ignore them in the blocks still holding them.
CREATE TABLE sample_blocks (
    series_id INTEGER NOT NULL,
    start     INTEGER NOT NULL,
    count     INTEGER NOT NULL,
    times     BLOB NOT NULL,
    vals      BLOB NOT NULL,
    PRIMARY KEY (series_id, start)
) WITHOUT ROWID;
CREATE INDEX sample_blocks_start ON sample_blocks (start);

ALTER TABLE store_state ADD COLUMN blocks_upto INTEGER NOT NULL DEFAULT 0;
ALTER TABLE store_state ADD COLUMN blocks_epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE store_state ADD COLUMN blocks_kept_from INTEGER NOT NULL DEFAULT 0;
ALTER TABLE store_state ADD COLUMN blocks_frozen_to INTEGER NOT NULL DEFAULT 0;

-- The Worker's manual cleanup through the view: a deleted sample below blocks_frozen_to sends
-- its window back to the samples (the writer does the same for delete_series; a trigger on
-- `samples` itself would cost the retention purge a check per row: W6's push p99 during a
-- purge tripled). A forgotten series' blocks go with it (its id may be given again).
CREATE TRIGGER metrics_delete_blocks INSTEAD OF DELETE ON metrics
WHEN OLD.timestamp < (SELECT blocks_frozen_to FROM store_state)
BEGIN
    UPDATE store_state SET blocks_upto = min(blocks_upto, OLD.timestamp - OLD.timestamp % 600),
                           blocks_epoch = blocks_epoch + 1;
END;
CREATE TRIGGER series_blocks_forgotten AFTER DELETE ON series
BEGIN
    DELETE FROM sample_blocks WHERE series_id = OLD.id;
END;
