"""Notifications: ``hook_run.severity`` and the table ``notify_digest``.

``hook_run.severity`` is the severity of the finding a run acted on, so a notification hook
sends again when the same certificate's finding rises (NULL in older rows: never re-sent).
``notify_digest`` holds the findings a ``digest = "daily"`` hook collected, one row per (hook,
UTC day, certificate), until the first run after that day delivers them as one message.

Revision ID: 0009_notify
Revises: 0008_fleet

Frozen history: the table is spelled out here, never taken from ``scanner.inventory.tables``.

Additive: a nullable column and a new table, so a certscan at 0008_fleet keeps working on the
upgraded database. The upgrade skips what exists (a half-done earlier upgrade).

Downgrade drops the table (undelivered digests are lost) and the column.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_notify"
down_revision = "0008_fleet"
branch_labels = None
depends_on = None

#: A certscan at 0008_fleet keeps working after this revision.
additive = True

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if "severity" not in {c["name"] for c in inspector.get_columns("hook_run")}:
        op.add_column("hook_run", sa.Column("severity", sa.Text(), nullable=True))
    if "notify_digest" in set(inspector.get_table_names()):
        return
    op.create_table(
        "notify_digest",
        sa.Column("id", BIG, primary_key=True, autoincrement=True),
        sa.Column("hook", sa.Text(), nullable=False),
        sa.Column("window_start", TIME, nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("severity", sa.Text(), nullable=False),
        sa.Column("context", sa.Text(), nullable=False),
        sa.Column("collected_at", TIME, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claim", sa.Text(), nullable=True),
        sa.Column("claimed_at", TIME, nullable=True),
        sa.Column("next_attempt_at", TIME, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sent_at", TIME, nullable=True),
        sa.UniqueConstraint("hook", "window_start", "sha256", name="uq_notify_digest_entry"),
    )


def downgrade() -> None:
    op.drop_table("notify_digest")
    with op.batch_alter_table("hook_run", recreate="never") as batch:
        batch.drop_column("severity")
