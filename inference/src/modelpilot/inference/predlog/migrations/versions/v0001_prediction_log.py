"""The prediction log: predictions, labels, and the indexes of their joins.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create both tables and the indexes the label join, the shadow comparison and retention use."""
    op.execute(
        """
        CREATE TABLE predictions (
            request_id      text             NOT NULL,
            row             integer          NOT NULL,
            track           text             NOT NULL CHECK (track IN ('stable', 'canary')),
            model           text             NOT NULL,
            version         text             NOT NULL,
            logged_at       timestamptz      NOT NULL,
            predicted_class integer,
            score           double precision,
            prediction      jsonb,
            inputs_hash     bytea,
            inputs          jsonb,
            counted         boolean          NOT NULL DEFAULT false,
            compared        boolean          NOT NULL DEFAULT false,
            PRIMARY KEY (request_id, row, track)
        )
        """
    )
    # Shadow pass: the candidate rows not compared yet, oldest first, and the stable rows with the same inputs.
    op.execute(
        "CREATE INDEX predictions_shadow_pending ON predictions (model, logged_at) "
        "WHERE track = 'canary' AND NOT compared"
    )
    op.execute(
        "CREATE INDEX predictions_stable_inputs ON predictions (model, inputs_hash, logged_at) "
        "WHERE track = 'stable' AND inputs_hash IS NOT NULL"
    )
    op.execute("CREATE INDEX predictions_logged_at ON predictions (logged_at)")
    op.execute(
        """
        CREATE TABLE labels (
            request_id  text        NOT NULL,
            row         integer     NOT NULL,
            label       integer     NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now(),
            source      text        NOT NULL DEFAULT '',
            PRIMARY KEY (request_id, row)
        )
        """
    )
    op.execute("CREATE INDEX labels_received_at ON labels (received_at)")


def downgrade() -> None:
    """Drop both tables."""
    op.execute("DROP TABLE labels")
    op.execute("DROP TABLE predictions")
