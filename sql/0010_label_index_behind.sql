-- The label index is written behind the writer (store/sqlite/label_index.py), in short
-- transactions of its own between batches, instead of by a trigger inside the batch that
-- creates the series: the trigger doubled the time a push of 100k new series held every other
-- push up (bench W10, W11). `labelled_upto`: every series with an id up to it is in
-- series_labels; readers check those above it against their labels directly
-- (store/sqlite/query.py), so a selector sees a series from the commit that creates it.
-- New series ids are always above it, even after the newest series is deleted.
DROP TRIGGER series_labelled;
ALTER TABLE store_state ADD COLUMN labelled_upto INTEGER NOT NULL DEFAULT 0;
UPDATE store_state SET labelled_upto = coalesce((SELECT max(id) FROM series), 0);
