"""Settings of event grouping (the `grouping:` section of the config file)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class GroupingSettings(BaseModel):
    """Thresholds and windows for near-duplicate and event grouping.

    Defaults must serve every corpus; users rarely need to change them.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    # Stage 1: near-duplicates (MinHash of word 3-shingles).
    duplicate_jaccard: float = Field(0.5, ge=0, le=1, description="estimated Jaccard of a copy")
    duplicate_min_tokens: int = Field(30, ge=3, description="shorter texts skip stage 1")
    # Stage 2: events.
    threshold: float = Field(0.20, ge=0, le=1, description="similarity to join an event")
    merge_threshold: float = Field(0.5, ge=0, le=1, description="similarity to merge events")
    merge_entity_threshold: float = Field(
        0.5, ge=0, le=1, description="entity similarity two events need to merge"
    )
    split_ncut: float = Field(
        0.8,
        ge=0,
        le=2,
        description="a young event whose reports fall in two groups with a normalised cut "
        "below this splits in two (0: never)",
    )
    subject_veto: bool = Field(
        True,
        description="refuse a join or merge when both sides name specific subjects (rare in "
        "the window) and share none of them",
    )
    # Headline-only articles (or very short texts) have sparse vectors whose similarities run
    # lower; they get thresholds of their own.
    short_text_words: int = Field(40, ge=0, description="texts with fewer words are short")
    short_threshold: float = Field(0.2, ge=0, le=1)
    short_merge_threshold: float = Field(0.25, ge=0, le=1)
    window_hours: float = Field(72, gt=0, description="publication-time window of an event")
    title_weight: float = Field(3.0, ge=0)
    lead_words: int = Field(80, ge=0, description="body words weighted as the lead")
    body_words: int = Field(100, ge=0, description="body words read at all")
    body_weight: float = Field(0.3, ge=0, description="weight of body words after the lead")
    number_weight: float = Field(2.0, ge=0, description="weight of a figure in title or lead")
    entity_weight: float = Field(1.5, ge=0, description="weight of an entity beside its words")
    candidates: int = Field(6, ge=1, description="events scored per article")
    vector_terms: int = Field(64, ge=8, description="heaviest terms kept per article vector")
