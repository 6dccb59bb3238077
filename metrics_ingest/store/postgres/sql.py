"""The PostgreSQL engine's runtime SQL, as named constants (never string-formatted at run
time, except partition names, which are made from integers only: partitions.py).

A batch's rows go in as arrays, one statement per table (`unnest`): one round trip and one
parse whatever the batch size."""

from __future__ import annotations

from metrics_ingest.store.deletion import DeletionStatements
from metrics_ingest.store.groups import GroupStatements

# Advisory lock keys (pg_advisory_*): the writers' shared lock against series deletion, and
# the lock that serialises partition creation and migrations.
SERIES_LOCK = 0x6D69_0001
PARTITION_LOCK = 0x6D69_0002
MIGRATION_LOCK = 0x6D69_0003
CHANNEL = "metrics_ingest"  # LISTEN/NOTIFY channel of the change feed
LISTEN = "LISTEN metrics_ingest"

BEGIN = "BEGIN"
COMMIT = "COMMIT"
ADVISORY_LOCK_SHARED = "SELECT pg_advisory_xact_lock_shared(%s)"
ADVISORY_LOCK = "SELECT pg_advisory_xact_lock(%s)"
SELECT_STATE = "SELECT series_epoch, families_version FROM store_state"
BUMP_FAMILIES_VERSION = (
    "UPDATE store_state SET families_version = families_version + 1 RETURNING families_version"
)
CLAIM_PURGE_SLOT = "UPDATE store_state SET purge_slot = %s WHERE purge_slot < %s"

SELECT_SERIES_BY_KEYS = (
    "SELECT s.id, s.metric_name, s.source, s.labels"
    " FROM unnest(%s::text[], %s::text[], %s::text[]) AS k(metric_name, source, labels)"
    " JOIN series s ON s.metric_name = k.metric_name AND s.source = k.source"
    " AND s.labels = k.labels"
)
# In the batch's order (series.py: neighbouring ids for a push's series; two writers
# creating the same new series in different orders can deadlock, and PostgreSQL aborts one,
# whose batch is tried again); a series another writer created meanwhile is skipped here
# and found by SELECT_SERIES_BY_KEYS after.
INSERT_SERIES = (
    "INSERT INTO series (metric_name, source, labels, block)"
    " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[])"
    " ON CONFLICT DO NOTHING RETURNING id, metric_name, source, labels"
)
# Array parameters go in binary (%b): 20% faster than text for 10,000-row arrays.
UPSERT_SAMPLES = (
    "INSERT INTO samples (timestamp, series_id, value)"
    " SELECT * FROM unnest(%b::bigint[], %b::bigint[], %b::float8[])"
    " ON CONFLICT (timestamp, series_id) DO UPDATE SET value = excluded.value"
)
# A big batch's samples go in by binary COPY (3.2x the upsert, bench/pg_drivers.py); a
# conflict with a stored sample (a retried push) rolls the COPY back and the upsert runs.
COPY_SAMPLES = "COPY samples (timestamp, series_id, value) FROM STDIN (FORMAT BINARY)"
COPY_MIN_ROWS = 64
# Series with a latest row are updated in place (HOT updates: latest has room on its
# pages); only when some had none (new series) does the upsert run for the batch.
UPDATE_LATEST = (
    "UPDATE latest l SET timestamp = CASE WHEN u.ts >= l.timestamp THEN u.ts ELSE l.timestamp END,"
    " value = CASE WHEN u.ts >= l.timestamp THEN u.v ELSE l.value END,"
    " hidden = CASE WHEN u.ts >= l.timestamp THEN 0 ELSE l.hidden END"
    " FROM unnest(%b::bigint[], %b::bigint[], %b::float8[]) AS u(id, ts, v)"
    " WHERE l.series_id = u.id"
)
UPSERT_LATEST = (
    "INSERT INTO latest (series_id, timestamp, value)"
    " SELECT * FROM unnest(%b::bigint[], %b::bigint[], %b::float8[])"
    " ON CONFLICT (series_id) DO UPDATE SET timestamp = excluded.timestamp,"
    " value = excluded.value, hidden = 0 WHERE excluded.timestamp >= latest.timestamp"
)
UPSERT_SOURCES = (
    "INSERT INTO sources (source, newest) SELECT * FROM unnest(%s::text[], %s::bigint[])"
    " ON CONFLICT (source) DO UPDATE SET newest = greatest(sources.newest, excluded.newest)"
)
NOTIFY = "SELECT pg_notify(%s, %s)"

# -- push groups (the Pushgateway API) -----------------------------------------------------

GROUPS = GroupStatements(
    # The upsert locks the group's row until COMMIT: two servers' PUTs to one group apply
    # one after the other, each reading the members the other left.
    upsert_group=(
        "INSERT INTO push_groups (source, grouping, pushed_at, ttl) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (source, grouping) DO UPDATE SET pushed_at = excluded.pushed_at,"
        " ttl = excluded.ttl RETURNING id"),
    select_group="SELECT id FROM push_groups WHERE source = %s AND grouping = %s FOR UPDATE",
    select_members="SELECT series_id, family FROM group_series WHERE group_id = %s",
    delete_member="DELETE FROM group_series WHERE group_id = %s AND series_id = %s",
    insert_member=(
        "INSERT INTO group_series (group_id, series_id, family) VALUES (%s, %s, %s)"
        " ON CONFLICT (group_id, series_id) DO UPDATE SET family = excluded.family"),
    delete_group="DELETE FROM push_groups WHERE id = %s",
    hide_series="UPDATE latest SET hidden = 1, pinned = 0 WHERE series_id = %s",
    pin_series="UPDATE latest SET pinned = 1, hidden = 0 WHERE series_id = %s",
    fail_group=(
        "INSERT INTO push_groups (source, grouping, pushed_at, failed_at)"
        " VALUES (%s, %s, 0, %s)"
        " ON CONFLICT (source, grouping) DO UPDATE SET failed_at = excluded.failed_at"),
    select_expired=("SELECT id FROM push_groups WHERE pushed_at > 0"
                    " AND coalesce(ttl, %s) > 0 AND pushed_at + coalesce(ttl, %s) < %s"
                    " FOR UPDATE SKIP LOCKED"),
    expire_series="UPDATE latest SET hidden = 2, pinned = 0 WHERE series_id = %s",
)

# -- families -----------------------------------------------------------------------------

SELECT_FAMILIES = "SELECT name, type, help FROM families"
UPSERT_FAMILIES = (
    "INSERT INTO families (name, type, help)"
    " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[])"
    " ON CONFLICT (name) DO UPDATE SET type = excluded.type, help = excluded.help"
)

# -- retention ------------------------------------------------------------------------------

# Partitions of `samples` with their bounds, oldest first (the default partition has none).
SELECT_PARTITIONS = (
    "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
    " JOIN pg_class c ON c.oid = i.inhrelid"
    " WHERE i.inhparent = 'samples'::regclass ORDER BY c.relname"
)
# Up to %s expired samples of one partition ({0}: the boundary day or the default); a pinned
# series' newest sample (a group member) outlives the purge.
DELETE_PARTITION_CHUNK = (
    "DELETE FROM {0} WHERE ctid IN (SELECT ctid FROM {0} WHERE timestamp < %s"
    " AND (timestamp, series_id) NOT IN"
    " (SELECT timestamp, series_id FROM latest WHERE pinned = 1) LIMIT %s)"
)
DELETE_EXPIRED_MEMBERS = (
    "DELETE FROM group_series WHERE series_id IN"
    " (SELECT series_id FROM latest WHERE timestamp < %s AND pinned = 0)"
)
DELETE_EMPTY_GROUPS = (
    "DELETE FROM push_groups g WHERE NOT EXISTS"
    " (SELECT 1 FROM group_series m WHERE m.group_id = g.id)"
    " AND greatest(pushed_at, failed_at) < %s"
)
DELETE_EXPIRED_SERIES = (
    "DELETE FROM series WHERE id IN"
    " (SELECT series_id FROM latest WHERE timestamp < %s AND pinned = 0)"
)
DELETE_EXPIRED_LATEST = "DELETE FROM latest WHERE timestamp < %s AND pinned = 0"
# Staleness markers (sql/postgres/0003): one where the series has no sample at that time (a
# sample and a marker of the same second: the sample stands); the purge's finishing step
# drops the expired ones and those of forgotten series.
INSERT_STALE_MARKERS = (
    "INSERT INTO stale_markers (series_id, timestamp)"
    " SELECT m.s, m.t FROM unnest(%s::bigint[], %s::bigint[]) AS m(s, t)"
    " WHERE NOT EXISTS (SELECT 1 FROM samples x WHERE x.timestamp = m.t AND x.series_id = m.s)"
    " ON CONFLICT DO NOTHING"
)
DELETE_EXPIRED_MARKERS = (
    "DELETE FROM stale_markers m WHERE m.timestamp < %s"
    " OR NOT EXISTS (SELECT 1 FROM series s WHERE s.id = m.series_id)"
)
DELETE_EXPIRED_SOURCES = (
    "DELETE FROM sources WHERE newest < %s AND source NOT IN"
    " (SELECT s.source FROM latest l JOIN series s ON s.id = l.series_id WHERE l.pinned = 1)"
)
WRITE_PROBE = (
    "INSERT INTO probe (id, written_at, filler) VALUES (1, %s, NULL)"
    " ON CONFLICT (id) DO UPDATE SET written_at = excluded.written_at"
)
GROW_PROBE = (
    "INSERT INTO probe (id, written_at, filler) VALUES (2, %s, %s)"
    " ON CONFLICT (id) DO UPDATE SET filler = excluded.filler"
)
DELETE_GROW_PROBE = "DELETE FROM probe WHERE id = 2"
PROBE_GROWTH_BYTES = 256 * 1024

# -- reads ----------------------------------------------------------------------------------

SELECT_EXPORTED_BETWEEN = (
    "SELECT s.id, s.metric_name, s.source, '', s.metric_name || s.block, l.value,"
    " l.timestamp, l.pinned"
    " FROM latest l JOIN series s ON s.id = l.series_id"
    " WHERE l.series_id BETWEEN %s AND %s AND l.hidden = 0"
    " AND (l.timestamp >= %s OR l.pinned = 1) ORDER BY l.series_id"
)
SELECT_EXPORTED_NAMED = (
    "SELECT s.id, s.metric_name, s.source, s.labels, s.metric_name || s.block, l.value,"
    " l.timestamp, l.pinned"
    " FROM series s JOIN latest l ON l.series_id = s.id"
    " WHERE s.metric_name = ANY(%s::text[])"
    " AND l.hidden = 0 AND (l.timestamp >= %s OR l.pinned = 1)"
)
SELECT_RECENT_SAMPLES = (
    "SELECT s.source, x.timestamp, s.metric_name, x.value, s.labels"
    " FROM samples x JOIN series s ON s.id = x.series_id"
    " WHERE x.timestamp >= %(since)s"
    " AND (%(source)s::text IS NULL OR s.source = %(source)s)"
    " AND (%(metric)s::text IS NULL OR s.metric_name = %(metric)s)"
    " ORDER BY x.timestamp DESC, x.series_id DESC LIMIT %(limit)s"
)
SELECT_GROUPS = "SELECT source, grouping, pushed_at, failed_at FROM push_groups"
SELECT_ACTIVE_SOURCES = "SELECT source FROM sources WHERE newest >= %s ORDER BY source"
SELECT_DATABASE_SIZE = "SELECT pg_database_size(current_database())"
# Series budgets (store/budgets.py).
SELECT_SOURCE_SERIES = "SELECT source, series FROM source_series WHERE source = ANY(%s)"
SELECT_TOTAL_SERIES = "SELECT coalesce(sum(series), 0) FROM source_series"
SELECT_ALL_SOURCE_SERIES = "SELECT source, series FROM source_series WHERE series > 0"
# Deleting series by selector (store/deletion.py); id lists are arrays.
DELETION = DeletionStatements(
    ids=list,
    select_series=("SELECT id, metric_name, source, labels FROM series"
                   " WHERE (%s::text IS NULL OR metric_name = %s)"
                   " AND (%s::text IS NULL OR source = %s)"),
    delete_samples=("DELETE FROM samples WHERE timestamp BETWEEN %s AND %s"
                    " AND series_id = ANY(%s)"),
    delete_markers=("DELETE FROM stale_markers WHERE timestamp BETWEEN %s AND %s"
                    " AND series_id = ANY(%s)"),
    latest_within=("SELECT series_id FROM latest WHERE series_id = ANY(%s)"
                   " AND timestamp BETWEEN %s AND %s"),
    newest_left=("SELECT DISTINCT ON (series_id) series_id, timestamp, value FROM samples"
                 " WHERE series_id = ANY(%s) ORDER BY series_id, timestamp DESC"),
    update_latest="UPDATE latest SET timestamp = %s, value = %s WHERE series_id = %s",
    forget_members="DELETE FROM group_series WHERE series_id = ANY(%s)",
    forget_latest="DELETE FROM latest WHERE series_id = ANY(%s)",
    forget_series="DELETE FROM series WHERE id = ANY(%s) RETURNING source",
    forget_empty_groups=("DELETE FROM push_groups g WHERE NOT EXISTS"
                         " (SELECT 1 FROM group_series m WHERE m.group_id = g.id)"),
    forget_source="DELETE FROM sources WHERE source = %s",
    recount_source=("INSERT INTO sources (source, newest) SELECT s.source, max(l.timestamp)"
                    " FROM series s JOIN latest l ON l.series_id = s.id WHERE s.source = %s"
                    " GROUP BY s.source"),
    bounds="SELECT min(timestamp), max(timestamp) FROM samples",
)
# Series of groups past their TTL (latest.hidden = 2, groups.expire): forgotten, samples and
# all, by the finishing purge chunk.
FORGET_TTL_SAMPLES = (
    "DELETE FROM samples WHERE series_id IN (SELECT series_id FROM latest WHERE hidden = 2)")
FORGET_TTL_SERIES = "DELETE FROM series WHERE id IN (SELECT series_id FROM latest WHERE hidden = 2)"
FORGET_TTL_LATEST = "DELETE FROM latest WHERE hidden = 2"
