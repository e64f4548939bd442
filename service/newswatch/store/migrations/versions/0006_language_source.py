"""articles.language_source (declared or detected); stored language codes normalised

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

from newswatch.store.migrations.frozen_values import normalise_language

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "articles",
        sa.Column("language_source", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True),
    )
    # Languages stored before detection existed came from the sources: declared. Codes as the
    # sources wrote them (en_US, EN-gb) become what `lang:` rules match (en); a value that is
    # no code at all is left as it was.
    op.execute("UPDATE articles SET language_source = 'declared' WHERE language IS NOT NULL")
    bind = op.get_bind()
    stored = bind.execute(sa.text("SELECT DISTINCT language FROM articles")).scalars()
    rename = sa.text("UPDATE articles SET language = :new WHERE language = :old")
    for old in list(stored):
        new = normalise_language(old)
        if new is not None and new != old:
            bind.execute(rename, {"new": new, "old": old})


def downgrade() -> None:
    op.drop_column("articles", "language_source")
