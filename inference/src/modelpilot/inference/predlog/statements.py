"""The SQL of the log, in one place. Joins run after the rows they join are committed (see `writer`)."""

from __future__ import annotations

from modelpilot.inference.predlog.records import COLUMNS

_COLUMN_LIST = ", ".join(COLUMNS)

# A batch is COPYed straight into the table. COPY cannot skip rows already there (a client that sent the same
# request id twice): then the batch goes through a session's staging table and INSERT ... ON CONFLICT instead.
COPY_PREDICTIONS = f"COPY predictions ({_COLUMN_LIST}) FROM STDIN"
CREATE_BATCH_TABLE = (
    "CREATE TEMP TABLE IF NOT EXISTS predlog_batch (LIKE predictions INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
COPY_BATCH = f"COPY predlog_batch ({_COLUMN_LIST}) FROM STDIN"
INSERT_BATCH = (
    f"INSERT INTO predictions ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM predlog_batch ON CONFLICT DO NOTHING"
)

# Each joined (prediction, label) pair is counted once: `counted` flips under the row lock, and a second
# transaction that reaches the same row re-checks `NOT counted` after the first one commits.
_COUNT_PAIRS = """
    SELECT model, version, track, predicted_class, label, count(*) FROM counted GROUP BY 1, 2, 3, 4, 5
"""
JOIN_NEW_PREDICTIONS = (
    """
    WITH keys AS (
        SELECT DISTINCT * FROM unnest(%(ids)s::text[], %(tracks)s::text[]) AS k(request_id, track)
    ), counted AS (
        UPDATE predictions p SET counted = true
        FROM keys k JOIN labels l ON l.request_id = k.request_id
        WHERE p.request_id = k.request_id AND p.track = k.track AND p.row = l.row
          AND NOT p.counted AND p.predicted_class IS NOT NULL
        RETURNING p.model, p.version, p.track, p.predicted_class, l.label
    )
    """
    + _COUNT_PAIRS
)

CREATE_LABEL_TABLES = """
    CREATE TEMP TABLE labels_in (request_id text, row integer, label integer) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE labels_new (request_id text, row integer) ON COMMIT PRESERVE ROWS
"""
COPY_LABELS = "COPY labels_in (request_id, row, label) FROM STDIN"
INSERT_LABELS = """
    WITH stored AS (
        INSERT INTO labels (request_id, row, label, source)
        SELECT request_id, row, label, %(source)s FROM labels_in
        ON CONFLICT DO NOTHING RETURNING request_id, row
    )
    INSERT INTO labels_new SELECT request_id, row FROM stored
"""
JOIN_NEW_LABELS = (
    """
    WITH counted AS (
        UPDATE predictions p SET counted = true
        FROM labels_new n JOIN labels l ON l.request_id = n.request_id AND l.row = n.row
        WHERE p.request_id = n.request_id AND p.row = n.row AND NOT p.counted AND p.predicted_class IS NOT NULL
        RETURNING p.model, p.version, p.track, p.predicted_class, l.label
    )
    """
    + _COUNT_PAIRS
)
COUNT_UNMATCHED_LABELS = """
    SELECT count(*) FROM labels_new n
    WHERE NOT EXISTS (SELECT 1 FROM predictions p WHERE p.request_id = n.request_id AND p.row = n.row)
"""

# Each candidate row is compared once across pods: SKIP LOCKED hands disjoint rows to concurrent passes and
# `compared` flips in the same statement. The stable row nearest in time with the same inputs is its pair.
COMPARE_SHADOW = """
    WITH candidate AS (
        SELECT c.request_id, c.row, c.version, c.inputs_hash, c.logged_at, c.predicted_class, c.prediction
        FROM predictions c
        WHERE c.model = %(model)s AND c.track = 'canary' AND NOT c.compared AND c.inputs_hash IS NOT NULL
          AND c.logged_at > now() - %(window)s * interval '1 second'
        ORDER BY c.logged_at
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ), paired AS (
        SELECT c.request_id, c.row, c.version, s.version AS stable_version,
               (c.predicted_class IS NOT DISTINCT FROM s.predicted_class
                AND c.prediction IS NOT DISTINCT FROM s.prediction) AS agreed
        FROM candidate c
        CROSS JOIN LATERAL (
            SELECT s.version, s.predicted_class, s.prediction FROM predictions s
            WHERE s.model = %(model)s AND s.track = 'stable' AND s.inputs_hash = c.inputs_hash
              AND s.logged_at BETWEEN c.logged_at - %(window)s * interval '1 second'
                                  AND c.logged_at + %(window)s * interval '1 second'
            ORDER BY abs(extract(epoch FROM s.logged_at - c.logged_at))
            LIMIT 1
        ) s
    ), compared AS (
        UPDATE predictions p SET compared = true FROM paired
        WHERE p.request_id = paired.request_id AND p.row = paired.row AND p.track = 'canary'
        RETURNING paired.version, paired.stable_version, paired.agreed
    )
    SELECT version, stable_version, agreed, count(*) FROM compared GROUP BY 1, 2, 3
"""
# Candidate rows that found no stable pair within twice the window never will: they stop being candidates.
EXPIRE_SHADOW = """
    UPDATE predictions SET compared = true
    WHERE ctid IN (
        SELECT ctid FROM predictions
        WHERE model = %(model)s AND track = 'canary' AND NOT compared
          AND logged_at <= now() - 2 * %(window)s * interval '1 second'
        LIMIT %(limit)s
    )
"""

# Retention: bounded deletes (short transactions, few locks) repeated until nothing old is left.
DELETE_OLD_PREDICTIONS = """
    DELETE FROM predictions WHERE ctid IN (
        SELECT ctid FROM predictions WHERE logged_at < now() - %(days)s * interval '1 day' LIMIT %(limit)s
    )
"""
DELETE_OLD_LABELS = """
    DELETE FROM labels WHERE ctid IN (
        SELECT ctid FROM labels WHERE received_at < now() - %(days)s * interval '1 day' LIMIT %(limit)s
    )
"""
RETENTION_LOCK = 0x6D70_6C72  # "mplr": one pod at a time prunes
TRY_LOCK = "SELECT pg_try_advisory_lock(%(key)s)"
UNLOCK = "SELECT pg_advisory_unlock(%(key)s)"
