-- What every server on the file must agree on (several `serve --workers`): purge_slot is the
-- last scheduled purge claimed (a minute number), so exactly one server runs each.
CREATE TABLE store_state (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    purge_slot INTEGER NOT NULL DEFAULT 0
);
INSERT INTO store_state (id) VALUES (1);
