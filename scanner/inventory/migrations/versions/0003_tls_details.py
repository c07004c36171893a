"""TLS details: observation columns legacy_capture, tls_group and signature_scheme.

Revision ID: 0003_tls_details
Revises: 0002

Frozen history: the columns are spelled out here, never taken from ``scanner.inventory.tables``.

Additive: three nullable columns only (NULL in older rows: not recorded), so a certscan at
revision 0002 keeps working on the upgraded database. The upgrade skips a column that already
exists, so it also completes a database an earlier upgrade left half done.

Downgrade drops the three columns in place (``recreate="never"``, as 0002 explains: copying
``observation`` would cascade-delete its chains on SQLite).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_tls_details"
down_revision = "0002"
branch_labels = None
depends_on = None

#: A certscan at 0002 keeps working after this revision.
additive = True


def _columns() -> tuple[sa.Column[object], ...]:
    return (
        sa.Column("legacy_capture", sa.Boolean(), nullable=True),
        sa.Column("tls_group", sa.Text(), nullable=True),
        sa.Column("signature_scheme", sa.Text(), nullable=True),
    )


def upgrade() -> None:
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("observation")}
    for column in _columns():
        if column.name not in present:
            op.add_column("observation", column)


def downgrade() -> None:
    with op.batch_alter_table("observation", recreate="never") as batch:
        for column in reversed(_columns()):
            batch.drop_column(column.name)
