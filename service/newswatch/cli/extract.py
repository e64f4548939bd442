"""`newswatch extract URL_OR_FILE [--json]`: what newswatch takes from one page."""

from __future__ import annotations

import asyncio
import json
import re
import zlib
from pathlib import Path

import click

from newswatch.cli.common import AppContext, pass_app
from newswatch.fetch.extract import Extracted, extract_article


def _read_file(path: Path, limit: int) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".gz":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            data = inflater.decompress(data, limit + 1)
        except zlib.error as exc:
            raise click.ClickException(f"{path}: not a valid .gz file: {exc}") from None
        if len(data) > limit:
            raise click.ClickException(f"{path}: over {limit} bytes once decompressed")
    return data


def extract_target(target: str, app: AppContext, base_url: str | None = None) -> Extracted:
    """Extract a URL (fetched like a page source's article) or a local file (`base_url`: the
    address it was saved from, for relative links and site-specific rules)."""
    settings = app.settings
    if re.match(r"(?i)^https?://", target):
        from newswatch.fetch.page_sources import fetch_and_extract

        _result, extracted = asyncio.run(fetch_and_extract(target, settings))
        return extracted
    path = Path(target)
    if not path.is_file():
        raise click.ClickException(f"{target}: no such file (or give an http(s):// URL)")
    return extract_article(_read_file(path, settings.http_max_body_bytes), url=base_url)


def _show(ex: Extracted) -> None:
    for label, value in (
        ("title", ex.title),
        ("author", ex.author),
        ("date", ex.published.isoformat() if ex.published else None),
        ("language", ex.language),
        ("canonical URL", ex.canonical_url),
        ("encoding", ex.encoding),
    ):
        click.echo(f"{label + ':':15}{value or '-'}")
    click.echo()
    click.echo(ex.text or "")


@click.command("extract")
@click.argument("target", metavar="URL_OR_FILE")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@click.option("--url", "base_url", help="for a file: the URL it was saved from")
@pass_app
def extract_cmd(app: AppContext, target: str, as_json: bool, base_url: str | None) -> None:
    """Show what newswatch extracts from one page: title, date, author, language,
    canonical URL and main text. A .gz file is read decompressed."""
    ex = extract_target(target, app, base_url)
    if as_json:
        click.echo(json.dumps(ex.as_json(), ensure_ascii=False))
    else:
        _show(ex)
    if ex.error:
        click.echo(f"{target}: {ex.error}", err=True)
        raise SystemExit(1)


def register(main: click.Group) -> None:
    main.add_command(extract_cmd)
