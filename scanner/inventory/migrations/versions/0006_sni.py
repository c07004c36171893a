"""Revocation: the column observation.ocsp_next_update.

Adds ``observation.ocsp_next_update``: the ``next_update`` of the stapled OCSP response's answer
about the leaf, computed when the observation is stored, so the Prometheus collector reports
``certscan_ocsp_next_update_timestamp_seconds`` from a column instead of parsing every staple on
every scrape.

Revision ID: 0006_sni
Revises: 0002

Frozen history: the column is spelled out here, never taken from ``scanner.inventory.tables``.

Additive: one nullable column (NULL: no staple, no answer about the leaf, or stored before this
revision), so a certscan at revision 0002 keeps working on the upgraded database. The upgrade
skips the column when it already exists.

Downgrade drops the column in place (``recreate="never"``, as 0002 explains for SQLite).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_sni"
down_revision = "0005_zones"
branch_labels = None
depends_on = None

#: A certscan at 0002 keeps working after this revision.
additive = True

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if "ocsp_next_update" not in {c["name"] for c in inspector.get_columns("observation")}:
        op.add_column("observation", sa.Column("ocsp_next_update", TIME, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("observation", recreate="never") as batch:
        batch.drop_column("ocsp_next_update")
