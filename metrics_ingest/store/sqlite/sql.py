"""The SQLite engine's runtime SQL, as named constants (never string-formatted at run time)."""

from __future__ import annotations

import orjson

from metrics_ingest.store.deletion import DeletionStatements
from metrics_ingest.store.groups import GroupStatements

SET_SYNCHRONOUS = {"full": "PRAGMA synchronous=FULL", "normal": "PRAGMA synchronous=NORMAL"}
SELECT_DATA_VERSION = "PRAGMA data_version"
SELECT_STATE = "SELECT series_epoch, families_version, blocks_frozen_to FROM store_state"
INSERT_CHANGE = "INSERT INTO changes (origin, payload) VALUES (?, ?)"
# Notices are kept for this many commits: a worker further behind reads everything again.
CHANGES_KEPT = 10_000
PRUNE_CHANGES = "DELETE FROM changes WHERE seq <= (SELECT max(seq) FROM changes) - ?"
SELECT_CHANGES_AFTER = "SELECT seq, origin, payload FROM changes WHERE seq > ? ORDER BY seq"
SELECT_LAST_CHANGE = "SELECT coalesce(max(seq), 0) FROM changes"
# Above the label index's watermark too (sql/0010): an id is never given again to a new
# series once the index has passed it, even when the series that had it is gone.
SELECT_MAX_SERIES_ID = (
    "SELECT max(coalesce(max(id), 0), (SELECT labelled_upto FROM store_state)) FROM series"
)
# Ids of the series named by a JSON array of [metric_name, source, labels]: one query for a
# batch's cache misses, each an index lookup on the series' unique key.
SELECT_SERIES_BY_KEYS = (
    "SELECT s.id, s.metric_name, s.source, s.labels FROM json_each(?) j"
    " JOIN series s ON s.metric_name = j.value ->> 0 AND s.source = j.value ->> 1"
    " AND s.labels = j.value ->> 2"
)
# Series created for a big push that was then not stored (store/preparing.py), unless
# another push has given them a sample meanwhile.
DELETE_UNUSED_SERIES = (
    "DELETE FROM series WHERE id IN (SELECT value FROM json_each(?))"
    " AND NOT EXISTS (SELECT 1 FROM latest l WHERE l.series_id = series.id)"
)
# The purge's sweep for those left by a crash while a push was prepared: every stored
# series has a latest value.
DELETE_SERIES_WITHOUT_SAMPLES = (
    "DELETE FROM series WHERE id NOT IN (SELECT series_id FROM latest)"
)
INSERT_SERIES = (
    "INSERT INTO series (id, metric_name, source, labels, block) VALUES (?, ?, ?, ?, ?)"
)
# A staleness marker where the series has no sample at that time (a sample and a marker of
# the same second: the sample stands). Forgotten series take theirs along (a trigger).
INSERT_STALE_MARKER = (
    "INSERT OR IGNORE INTO stale_markers (series_id, timestamp) SELECT ?1, ?2"
    " WHERE NOT EXISTS (SELECT 1 FROM samples WHERE timestamp = ?2 AND series_id = ?1)"
)
DELETE_EXPIRED_MARKERS = "DELETE FROM stale_markers WHERE timestamp < ?"
UPSERT_SOURCE = (
    "INSERT INTO sources (source, newest) VALUES (?, ?)"
    " ON CONFLICT (source) DO UPDATE SET newest = max(newest, excluded.newest)"
)
UPSERT_SAMPLE = (
    "INSERT INTO samples (timestamp, series_id, value) VALUES (?, ?, ?)"
    " ON CONFLICT (timestamp, series_id) DO UPDATE SET value = excluded.value"
)
UPSERT_LATEST = (
    "INSERT INTO latest (series_id, timestamp, value) VALUES (?, ?, ?)"
    " ON CONFLICT (series_id) DO UPDATE SET timestamp = excluded.timestamp,"
    " value = excluded.value, hidden = 0 WHERE excluded.timestamp >= latest.timestamp"
)

# A batch's rows go in as multi-row VALUES statements: parameters are bound in C with the GIL
# held, then the whole statement runs as one sqlite3_step with it released. 2.5M rows/s,
# against 1.15M for executemany (which releases and re-takes the GIL around every row) and
# 1.0M for a JSON array through json_each (bench/README.md, "Writer"). Chunks of 256, 128,
# ..., 1 rows: a handful of prepared statements (kept in sqlite3's cache) serve every batch,
# and 768 parameters stay under the 999 of SQLite builds before 3.32.
VALUES_CHUNK_ROWS = 256
CHUNK_SIZES = tuple(1 << n for n in range(VALUES_CHUNK_ROWS.bit_length()))


def multi_row(statement: str) -> dict[int, str]:
    """`statement` (one VALUES row of three parameters) for every chunk size."""
    one = "VALUES (?, ?, ?)"
    assert one in statement
    return {size: statement.replace(one, "VALUES " + ",".join(["(?,?,?)"] * size))
            for size in CHUNK_SIZES}


UPSERT_SAMPLES = multi_row(UPSERT_SAMPLE)
UPSERT_LATESTS = multi_row(UPSERT_LATEST)

# -- push groups (the Pushgateway API) -----------------------------------------------------

UPSERT_GROUP = (
    "INSERT INTO push_groups (source, grouping, pushed_at, ttl) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (source, grouping) DO UPDATE SET pushed_at = excluded.pushed_at,"
    " ttl = excluded.ttl RETURNING id"
)
SELECT_GROUP = "SELECT id FROM push_groups WHERE source = ? AND grouping = ?"
SELECT_GROUP_MEMBERS = "SELECT series_id, family FROM group_series WHERE group_id = ?"
DELETE_GROUP_MEMBER = "DELETE FROM group_series WHERE group_id = ? AND series_id = ?"
INSERT_GROUP_MEMBER = (
    "INSERT OR REPLACE INTO group_series (group_id, series_id, family) VALUES (?, ?, ?)"
)
DELETE_GROUP = "DELETE FROM push_groups WHERE id = ?"
HIDE_SERIES = "UPDATE latest SET hidden = 1, pinned = 0 WHERE series_id = ?"
PIN_SERIES = "UPDATE latest SET pinned = 1, hidden = 0 WHERE series_id = ?"
FAIL_GROUP = (
    "INSERT INTO push_groups (source, grouping, pushed_at, failed_at) VALUES (?, ?, 0, ?)"
    " ON CONFLICT (source, grouping) DO UPDATE SET failed_at = excluded.failed_at"
)
GROUPS = GroupStatements(
    upsert_group=UPSERT_GROUP, select_group=SELECT_GROUP, select_members=SELECT_GROUP_MEMBERS,
    delete_member=DELETE_GROUP_MEMBER, insert_member=INSERT_GROUP_MEMBER,
    delete_group=DELETE_GROUP, hide_series=HIDE_SERIES, pin_series=PIN_SERIES,
    fail_group=FAIL_GROUP,
    select_expired=("SELECT id FROM push_groups WHERE pushed_at > 0"
                    " AND coalesce(ttl, ?) > 0 AND pushed_at + coalesce(ttl, ?) < ?"),
    expire_series="UPDATE latest SET hidden = 2, pinned = 0 WHERE series_id = ?")
# A Pushgateway-API group's current members (pinned) are never forgotten by the purge:
# their newest sample stays, so the group keeps its meaning until replaced or deleted.
DELETE_EXPIRED_MEMBERS = (
    "DELETE FROM group_series WHERE series_id IN"
    " (SELECT series_id FROM latest WHERE timestamp < ? AND pinned = 0)"
)
# Groups left without series whose last push or failure is older than the cutoff.
DELETE_EMPTY_GROUPS = (
    "DELETE FROM push_groups WHERE id NOT IN (SELECT DISTINCT group_id FROM group_series)"
    " AND max(pushed_at, failed_at) < ?"
)

# -- families -----------------------------------------------------------------------------


UPSERT_FAMILY = (
    "INSERT INTO families (name, type, help) VALUES (?, ?, ?)"
    " ON CONFLICT (name) DO UPDATE SET type = excluded.type, help = excluded.help"
)

# -- retention ------------------------------------------------------------------------------

# The chunk boundary: the (timestamp, series_id) key `chunk` rows past the oldest sample.
SELECT_PURGE_BOUNDARY = (
    "SELECT timestamp, series_id FROM samples WHERE timestamp < ?"
    " ORDER BY timestamp, series_id LIMIT 1 OFFSET ?"
)
# The newest sample of a pinned series (a group member) is kept; its older samples go.
DELETE_SAMPLES_BEFORE_KEY = (
    "DELETE FROM samples WHERE (timestamp < ? OR (timestamp = ? AND series_id < ?))"
    " AND (timestamp, series_id) NOT IN (SELECT timestamp, series_id FROM latest"
    " WHERE pinned = 1)"
)
DELETE_SAMPLES_BEFORE = (
    "DELETE FROM samples WHERE timestamp < ? AND (timestamp, series_id) NOT IN"
    " (SELECT timestamp, series_id FROM latest WHERE pinned = 1)"
)
DELETE_EXPIRED_SERIES = (
    "DELETE FROM series WHERE id IN"
    " (SELECT series_id FROM latest WHERE timestamp < ? AND pinned = 0)"
)
DELETE_EXPIRED_LATEST = "DELETE FROM latest WHERE timestamp < ? AND pinned = 0"
CLAIM_PURGE_SLOT = "UPDATE store_state SET purge_slot = ? WHERE purge_slot < ?"
WRITE_PROBE = "INSERT OR REPLACE INTO probe (id, written_at) VALUES (1, ?)"
GROW_PROBE = "INSERT OR REPLACE INTO probe (id, written_at, filler) VALUES (2, ?, zeroblob(?))"
DELETE_GROW_PROBE = "DELETE FROM probe WHERE id = 2"
PROBE_GROWTH_BYTES = 256 * 1024

# -- reads ----------------------------------------------------------------------------------

# What /metrics renders from: visible series, pinned or fresh, by id range or by name.
# A row's `head` is the line's start, `name{labels}`; the labels themselves are needed only
# to order a histogram's members (by name), so the range query leaves them out.
SELECT_EXPORTED_BETWEEN = (
    "SELECT s.id, s.metric_name, s.source, '', s.metric_name || s.block, l.value,"
    " l.timestamp, l.pinned"
    " FROM latest l JOIN series s ON s.id = l.series_id"
    " WHERE l.series_id BETWEEN ? AND ? AND l.hidden = 0"
    " AND (l.timestamp >= ? OR l.pinned = 1) ORDER BY l.series_id"
)
SELECT_EXPORTED_NAMED = (
    "SELECT s.id, s.metric_name, s.source, s.labels, s.metric_name || s.block, l.value,"
    " l.timestamp, l.pinned"
    " FROM series s JOIN latest l ON l.series_id = s.id"
    " WHERE s.metric_name IN (SELECT value FROM json_each(?))"
    " AND l.hidden = 0 AND (l.timestamp >= ? OR l.pinned = 1)"
)
SELECT_RECENT_SAMPLES = (
    "SELECT s.source, x.timestamp, s.metric_name, x.value, s.labels"
    " FROM samples x JOIN series s ON s.id = x.series_id"
    " WHERE x.timestamp >= :since"
    " AND (:source IS NULL OR s.source = :source)"
    " AND (:metric IS NULL OR s.metric_name = :metric)"
    " ORDER BY x.timestamp DESC, x.series_id DESC LIMIT :limit"
)
SELECT_GROUPS = "SELECT source, grouping, pushed_at, failed_at FROM push_groups"
SELECT_VIEW_DELETES = "SELECT count FROM metrics_deleted"
SELECT_ACTIVE_SOURCES = "SELECT source FROM sources WHERE newest >= ? ORDER BY source"
# Rebuilt after another process's commit (a delete through the view can take a source's
# newest sample away).
RECOUNT_SOURCES = (
    "INSERT OR REPLACE INTO sources (source, newest)"
    " SELECT s.source, max(l.timestamp) FROM series s JOIN latest l ON l.series_id = s.id"
    " GROUP BY s.source"
)
DELETE_SOURCES = "DELETE FROM sources"
# After a purge: sources left without samples (pinned Pushgateway-API series stay).
DELETE_EXPIRED_SOURCES = (
    "DELETE FROM sources WHERE newest < ? AND source NOT IN"
    " (SELECT s.source FROM latest l JOIN series s ON s.id = l.series_id WHERE l.pinned = 1)"
)
# Series budgets (store/budgets.py).
SELECT_SOURCE_SERIES = (
    "SELECT source, series FROM source_series WHERE source IN (SELECT value FROM json_each(?))")
SELECT_TOTAL_SERIES = "SELECT coalesce(sum(series), 0) FROM source_series"
SELECT_ALL_SOURCE_SERIES = "SELECT source, series FROM source_series WHERE series > 0"
# Deleting series by selector (store/deletion.py); id lists are JSON arrays.
DELETION = DeletionStatements(
    ids=lambda ids: orjson.dumps(ids),
    select_series=("SELECT id, metric_name, source, labels FROM series"
                   " WHERE (? IS NULL OR metric_name = ?) AND (? IS NULL OR source = ?)"),
    delete_samples=("DELETE FROM samples WHERE timestamp BETWEEN ? AND ?"
                    " AND series_id IN (SELECT value FROM json_each(?))"),
    delete_markers=("DELETE FROM stale_markers WHERE timestamp BETWEEN ? AND ?"
                    " AND series_id IN (SELECT value FROM json_each(?))"),
    latest_within=("SELECT series_id FROM latest"
                   " WHERE series_id IN (SELECT value FROM json_each(?))"
                   " AND timestamp BETWEEN ? AND ?"),
    newest_left=("SELECT series_id, max(timestamp), value FROM samples"
                 " WHERE series_id IN (SELECT value FROM json_each(?)) GROUP BY series_id"),
    update_latest="UPDATE latest SET timestamp = ?, value = ? WHERE series_id = ?",
    forget_members=("DELETE FROM group_series"
                    " WHERE series_id IN (SELECT value FROM json_each(?))"),
    forget_latest="DELETE FROM latest WHERE series_id IN (SELECT value FROM json_each(?))",
    forget_series=("DELETE FROM series WHERE id IN (SELECT value FROM json_each(?))"
                   " RETURNING source"),
    forget_empty_groups=("DELETE FROM push_groups"
                         " WHERE id NOT IN (SELECT DISTINCT group_id FROM group_series)"),
    forget_source="DELETE FROM sources WHERE source = ?",
    recount_source=("INSERT INTO sources (source, newest) SELECT s.source, max(l.timestamp)"
                    " FROM series s JOIN latest l ON l.series_id = s.id WHERE s.source = ?"
                    " GROUP BY s.source"),
    bounds="SELECT min(timestamp), max(timestamp) FROM samples",
)
# Series of groups past their TTL (latest.hidden = 2, groups.expire): forgotten, samples and
# all, by the finishing purge chunk.
FORGET_TTL_SAMPLES = (
    "DELETE FROM samples WHERE series_id IN (SELECT series_id FROM latest WHERE hidden = 2)")
FORGET_TTL_SERIES = "DELETE FROM series WHERE id IN (SELECT series_id FROM latest WHERE hidden = 2)"
FORGET_TTL_LATEST = "DELETE FROM latest WHERE hidden = 2"
