"""The read API under /api/."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.security import HTTPBearer
from sqlmodel import Session

from newswatch.api import queries
from newswatch.api.deps import get_session
from newswatch.api.errors import ApiError
from newswatch.api.params import MAX_ID, MAX_LIMIT
from newswatch.api.schemas import (
    ERROR_RESPONSES,
    ArticleDetail,
    RuleList,
    RuleOut,
    SourceDetail,
    SourceList,
)

# Documents the bearer scheme in OpenAPI; TokenMiddleware enforces it when a token is set.
bearer = HTTPBearer(auto_error=False, description="NEWSWATCH_API_TOKEN, when set")

router = APIRouter(prefix="/api", dependencies=[Depends(bearer)], responses=ERROR_RESPONSES)

SessionDep = Annotated[Session, Depends(get_session)]
Since = Annotated[
    str | None,
    Query(
        max_length=64,
        description='only items active since: an age ("24h", "7d") or an ISO 8601 date/time',
    ),
]
Limit = Annotated[int, Query(ge=1, description=f"page size; values above {MAX_LIMIT} are capped")]
CursorParam = Annotated[
    str | None, Query(max_length=200, description="next_cursor of the previous page")
]
Id = Annotated[int, Path(ge=1, le=MAX_ID)]


def not_found(what: str, ident: int) -> ApiError:
    return ApiError(404, f"no {what} with id {ident}")


@router.get("/sources", response_model=SourceList, tags=["sources"])
def sources(
    session: SessionDep,
    in_error: Annotated[
        bool | None, Query(description="only failing (true) or healthy (false) sources")
    ] = None,
) -> SourceList:
    """Every source with its fetch state and last error; failing sources first."""
    return SourceList(items=queries.list_sources(session, in_error=in_error))


@router.get("/sources/{source_id}", response_model=SourceDetail, tags=["sources"])
def source(session: SessionDep, source_id: Id) -> SourceDetail:
    """One source with its most recent fetches."""
    found = queries.get_source(session, source_id)
    if found is None:
        raise not_found("source", source_id)
    return found


# GET /articles (with full-text search) and the exports: api/articles_routes.py.


@router.get("/articles/{article_id}", response_model=ArticleDetail, tags=["articles"])
def article(session: SessionDep, article_id: Id) -> ArticleDetail:
    """One article with its text and every source that carried it."""
    found = queries.get_article(session, article_id)
    if found is None:
        raise not_found("article", article_id)
    return found


@router.get("/rules", response_model=RuleList, tags=["alerts"])
def rules(request: Request) -> RuleList:
    """The alert rules of the config file the service runs with."""
    config = request.app.state.config
    return RuleList(
        items=[
            RuleOut(
                name=r.name,
                query=r.query,
                channels=r.channels,
                options=r.model_dump(
                    mode="json", exclude_defaults=True, exclude={"name", "query", "channels"}
                ),
            )
            for r in (config.rules if config is not None else [])
        ]
    )
