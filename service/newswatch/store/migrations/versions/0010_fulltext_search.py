"""full-text search: article_search (SQLite FTS5 / Postgres tsvector + GIN), existing rows indexed

Revision ID: 0010
Revises: 0009

The index holds each article's words as the alert matcher sees them (folded by Python, see
store/search.py), so the store writes its rows; the triggers here drop a row when its article
is deleted or its title, text, summary or language change (docs/decisions/0191).
"""

from __future__ import annotations

from alembic import op

from newswatch.store.migrations.frozen_search import index_every_article

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# Words split at spaces only: the store writes words already folded and joined by spaces
# (the ascii tokenizer keeps every non-ASCII character in a word; "_" is a word character
# to Python's \w, and so here).
SQLITE = [
    "CREATE VIRTUAL TABLE article_search USING fts5("
    "title, text, lang, tokenize = \"ascii tokenchars '_'\")",
    "CREATE TRIGGER article_search_delete AFTER DELETE ON articles BEGIN "
    "DELETE FROM article_search WHERE rowid = old.id; END",
    "CREATE TRIGGER article_search_update AFTER UPDATE OF title, text, summary, language "
    "ON articles WHEN old.title IS NOT new.title OR old.text IS NOT new.text "
    "OR old.summary IS NOT new.summary OR old.language IS NOT new.language "
    "BEGIN DELETE FROM article_search WHERE rowid = old.id; END",
]
POSTGRES = [
    "CREATE TABLE article_search ("
    "article_id INTEGER PRIMARY KEY REFERENCES articles (id) ON DELETE CASCADE, "
    "document TSVECTOR NOT NULL)",
    "CREATE INDEX ix_article_search_document ON article_search USING GIN (document)",
    "CREATE FUNCTION article_search_stale() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN DELETE FROM article_search WHERE article_id = OLD.id; RETURN NULL; END $$",
    "CREATE TRIGGER article_search_update AFTER UPDATE OF title, text, summary, language "
    "ON articles FOR EACH ROW WHEN ("
    "OLD.title IS DISTINCT FROM NEW.title OR OLD.text IS DISTINCT FROM NEW.text "
    "OR OLD.summary IS DISTINCT FROM NEW.summary OR OLD.language IS DISTINCT FROM NEW.language"
    ") EXECUTE FUNCTION article_search_stale()",
]


def upgrade() -> None:
    bind = op.get_bind()
    for statement in POSTGRES if bind.dialect.name == "postgresql" else SQLITE:
        op.execute(statement)
    index_every_article(bind, stem=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TABLE article_search")
        op.execute("DROP FUNCTION article_search_stale() CASCADE")
    else:
        op.execute("DROP TRIGGER article_search_delete")
        op.execute("DROP TRIGGER article_search_update")
        op.execute("DROP TABLE article_search")
