"""The alerts stage's read model: articles with every source that carried them (the rows
come from store/alerts.py), the document a rule's query reads, and which of the carriers
count for a rule."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session

from newswatch.alerts.config import RuleConfig
from newswatch.alerts.query import Document
from newswatch.store.alerts import ArticleRow, grouped_articles

ArticleView = ArticleRow


def load_articles(
    session: Session, ids: Sequence[int], *, with_text: bool = True
) -> list[ArticleView]:
    """Grouped articles among `ids` with every source that carried them, in id order
    (without their text unless `with_text`: a payload shows titles and links)."""
    return grouped_articles(session, ids, with_text=with_text)


def document(view: ArticleView) -> Document:
    """What a rule's query reads of an article: title, text, its carriers' names, language."""
    names = " ".join(name for _, name in view.sources)
    return Document.of(title=view.title, text=view.text, source=names, lang=view.language)


def counts_every_carrier(rule: RuleConfig) -> bool:
    """Whether every carrier of an article counts for `rule`: it has no source lists."""
    return not rule.sources and not rule.exclude_sources


def counted_sources(rule: RuleConfig, carriers: Sequence[tuple[int, str]]) -> list[int]:
    """The ids of the carriers (source id, name) of an article whose matches count for
    `rule` (its `sources` and `exclude_sources` lists): every carrier when it has neither."""
    if counts_every_carrier(rule):
        return [source_id for source_id, _ in carriers]
    return [
        source_id
        for source_id, name in carriers
        if (not rule.sources or name in rule.sources) and name not in rule.exclude_sources
    ]
