"""The shape of the code, checked on its source (an AST walk, nothing imported or run).

1. Imports run one way: cli -> service/api -> pipeline -> stages (fetch, grouping, alerts)
   -> store -> config. A module may import its own layer and the layers below it; neutral
   modules (below) may be imported by anyone and import only other neutral modules. The API
   shares the service's layer: the service process serves it (service.py starts the server),
   and the API reads through the store; nothing below either may import them.
2. Only the store layer builds SQL: a module outside it must not import SQLAlchemy's or
   SQLModel's statement builders (select, insert, update, delete, text, func, and_, or_, the
   dialects' inserts, ...). A Session or Engine may be held and passed on as an opaque handle
   (a stage runs inside the pipeline's transaction and hands it to named store functions);
   SQLAlchemy's exceptions may be caught (the API answers 503 for a busy store).

The rules and their reasons: docs/decisions/0131-layers-and-import-direction.md.
Modules of other changes still in progress that break a rule are listed in PENDING, each
with the rule it breaks; the test fails when one of them no longer needs its entry, so the
list only shrinks.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "service" / "newswatch"

# Layers, highest first; a module may import its own layer and any below it.
CLI, SERVICE, PIPELINE, STAGE, STORE, CONFIG = (
    "cli/api",
    "service",
    "pipeline",
    "stage",
    "store",
    "config",
)
RANK = {CLI: 6, SERVICE: 5, PIPELINE: 4, STAGE: 3, STORE: 2, CONFIG: 1}

# Neutral modules: no layer; importable from any layer; they import only each other. What
# every layer shares (types, errors, the clock, logging, parsing of durations and YAML, the
# metric registry, process lifecycle) and pure functions a low layer needs: the article keys
# the store dedupes by, and the rule query language with the text features it matches on
# (config validates rules by parsing them).
NEUTRAL = {
    "newswatch",  # __version__
    "newswatch.shared_types",
    "newswatch.errors",
    "newswatch.clock",
    "newswatch.log",
    "newswatch.durations",
    "newswatch.safeyaml",
    "newswatch.prometheus_registry",
    "newswatch.lifecycle",
    "newswatch.dedupe_keys",
    "newswatch.alerts.query",
    "newswatch.grouping.text",
    "newswatch.exports",  # CSV / JSON Lines formatting of rows, for the API and the CLI
    "newswatch.status_board",  # the scheduler's state shared with the API process
}

# Modules whose layer is not their package's: a stage's settings schema is part of the
# configuration (config.py composes them); a stage's table definitions are part of the store.
LAYER_OF_MODULE = {
    "newswatch.alerts.config": CONFIG,
    "newswatch.grouping.settings": CONFIG,
    "newswatch.store.alert_models": STORE,
    "newswatch.__main__": CLI,
    "newswatch.service": SERVICE,
    "newswatch.replay": SERVICE,  # drives the pipeline from a file, as the service from feeds
    "newswatch.poll_runs": SERVICE,  # the scheduler's per-source poll requests
    "newswatch.pipeline": PIPELINE,
    "newswatch.storing_sink": PIPELINE,  # the scaled mode's fetch workers' sink (no grouping)
    "newswatch.retention": STAGE,  # a maintenance job over the store, run by service and CLI
    "newswatch.config": CONFIG,
}
LAYER_OF_PACKAGE = {
    "newswatch.cli": CLI,
    "newswatch.api": SERVICE,
    "newswatch.scaled": SERVICE,  # the scaled mode's roles: scheduler, fetch, group, deliver
    "newswatch.fetch": STAGE,
    "newswatch.grouping": STAGE,
    "newswatch.alerts": STAGE,
    "newswatch.store": STORE,
}

# Alembic's migrations are history, loaded by path and run once as they were written: not a
# layer of the running code (0006 backfills languages with the detector of its day).
NOT_CHECKED = ("newswatch.store.migrations",)

SQL_PACKAGES = ("sqlalchemy", "sqlmodel")
# Names that build statements. Allowed besides: Session, Engine, Connection (handles),
# sqlalchemy.exc (errors), column types and schema items in the store layer.
SQL_BUILDERS = {
    "select",
    "insert",
    "update",
    "delete",
    "text",
    "func",
    "and_",
    "or_",
    "not_",
    "case",
    "exists",
    "literal",
    "literal_column",
    "union",
    "union_all",
    "bindparam",
    "column",
    "table",
    "col",
    "tuple_",
    "cast",
    "null",
    "true",
    "false",
}

IMPORTS_UP = "imports a layer above it"
BUILDS_SQL = "builds SQL outside the store"

# Pending exemptions: modules other changes own that still break a rule, and the rule. Each
# goes when its change is merged (the lead empties this list); the test fails for an entry
# that is no longer needed.
PENDING: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Violation:
    module: str
    rule: str
    detail: str


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str | None:
    """The module's layer, or None for a neutral module (or one outside newswatch)."""
    if module in NEUTRAL or not module.startswith("newswatch"):
        return None
    if module in LAYER_OF_MODULE:
        return LAYER_OF_MODULE[module]
    for package, layer in LAYER_OF_PACKAGE.items():
        if module == package or module.startswith(package + "."):
            return layer
    raise AssertionError(f"{module}: in no layer; add it to the layers of {__file__}")


def imported(tree: ast.AST, known: set[str]) -> list[tuple[str, str | None]]:
    """(module, name) for every import in the tree, wherever it is (functions, TYPE_CHECKING
    blocks); `from package import submodule` counts as an import of the submodule."""
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.append((sub, None) if sub in known else (node.module, alias.name))
    return found


def sql_builders_used(tree: ast.AST) -> set[str]:
    """SQL builders the tree imports by name, or reaches as `sqlalchemy.x` / `sa.x`."""
    used: set[str] = set()
    aliases: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] not in SQL_PACKAGES:
                continue
            used.update(f"{node.module}.{a.name}" for a in node.names if a.name in SQL_BUILDERS)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in SQL_PACKAGES:
                    aliases.add(alias.asname or alias.name.split(".")[0])
    if aliases:
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr in SQL_BUILDERS
            ):
                used.add(f"{node.value.id}.{node.attr}")
    return used


def check_module(module: str, source: str, known: set[str]) -> list[Violation]:
    tree = ast.parse(source)
    layer = layer_of(module)
    out: list[Violation] = []
    for target, _name in imported(tree, known):
        if not target.startswith("newswatch") or target == module:
            continue
        target_layer = layer_of(target)
        if layer is None and target_layer is not None:
            out.append(Violation(module, IMPORTS_UP, f"neutral, imports {target} ({target_layer})"))
        elif layer is not None and target_layer is not None and RANK[target_layer] > RANK[layer]:
            out.append(Violation(module, IMPORTS_UP, f"{layer}, imports {target} ({target_layer})"))
    if layer != STORE:
        for builder in sorted(sql_builders_used(tree)):
            out.append(Violation(module, BUILDS_SQL, f"imports {builder}"))
    return out


def all_modules() -> dict[str, str]:
    modules = {module_name(p): p.read_text(encoding="utf-8") for p in PACKAGE_DIR.rglob("*.py")}
    return {
        name: source for name, source in sorted(modules.items()) if not name.startswith(NOT_CHECKED)
    }


def violations() -> list[Violation]:
    modules = all_modules()
    known = set(modules)
    return [v for module, source in modules.items() for v in check_module(module, source, known)]


def test_imports_run_one_way_and_only_the_store_builds_sql() -> None:
    found = [v for v in violations() if (v.module, v.rule) not in PENDING]
    assert not found, "\n".join(f"{v.module}: {v.rule}: {v.detail}" for v in found)


def test_every_pending_exemption_is_still_needed() -> None:
    needed = {(v.module, v.rule) for v in violations()}
    stale = sorted(PENDING - needed)
    assert not stale, f"no longer needed, remove from PENDING: {stale}"


# --- the checker itself ---

KNOWN = {
    "newswatch.fetch",
    "newswatch.fetch.http",
    "newswatch.pipeline",
    "newswatch.store",
    "newswatch.store.db",
}


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("newswatch.store.articles", "from newswatch.fetch.http import Fetcher", IMPORTS_UP),
        ("newswatch.store.articles", "from newswatch.fetch import http", IMPORTS_UP),
        ("newswatch.fetch.pages", "import newswatch.pipeline", IMPORTS_UP),
        ("newswatch.config", "def f():\n    from newswatch.store.db import x", IMPORTS_UP),
        ("newswatch.shared_types", "from newswatch.config import Settings", IMPORTS_UP),
        ("newswatch.fetch.pages", "from sqlalchemy import select", BUILDS_SQL),
        ("newswatch.cli.rules", "from sqlmodel import col", BUILDS_SQL),
        (
            "newswatch.fetch.pages",
            "from sqlalchemy.dialects.postgresql import insert",
            BUILDS_SQL,
        ),
        ("newswatch.api.x", "import sqlalchemy as sa\nq = sa.select(1)", BUILDS_SQL),
    ],
)
def test_the_checker_finds(module: str, source: str, expected: str) -> None:
    assert [v.rule for v in check_module(module, source, KNOWN)] == [expected]


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("newswatch.cli.rules", "from newswatch.store.db import session_scope"),
        ("newswatch.pipeline", "from newswatch.fetch import http"),
        ("newswatch.fetch.poll", "from newswatch.fetch.http import Fetcher"),
        ("newswatch.store.db", "from newswatch.errors import StoreUnavailable"),
        ("newswatch.fetch.poll", "from sqlmodel import Session\nfrom sqlalchemy import Engine"),
        ("newswatch.api.errors", "from sqlalchemy.exc import OperationalError"),
        ("newswatch.store.articles", "from sqlalchemy import select, text"),
    ],
)
def test_the_checker_allows(module: str, source: str) -> None:
    assert check_module(module, source, KNOWN) == []


def test_a_module_in_no_layer_is_named() -> None:
    with pytest.raises(AssertionError, match=r"newswatch\.somewhere_new: in no layer"):
        layer_of("newswatch.somewhere_new")
