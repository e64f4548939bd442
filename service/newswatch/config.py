"""Configuration: environment variables (Settings) and the YAML file (FileConfig).

Environment variables carry deployment facts (database, HTTP limits, secrets); the YAML file
declares what to watch (sources), how to group (grouping) and whom to tell (rules, channels).
`${VAR}` and `${VAR:-default}` in the YAML file are expanded from the environment.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from newswatch import __version__, errors, safeyaml
from newswatch.alerts.config import ChannelConfig, RuleConfig, check_rule_channels
from newswatch.durations import parse_duration
from newswatch.grouping.settings import GroupingSettings

DEFAULT_DATABASE_URL = "sqlite:///./newswatch.db"


class Settings(BaseSettings):
    """Deployment settings, read from the environment (and a `.env` file if present)."""

    # Errors name the setting but never echo its value: some hold secrets (tokens, passwords).
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", hide_input_in_errors=True
    )

    database_url: str = Field(DEFAULT_DATABASE_URL, validation_alias="DATABASE_URL")
    config_path: Path | None = Field(None, validation_alias="NEWSWATCH_CONFIG")

    log_level: str = Field("INFO", validation_alias="NEWSWATCH_LOG_LEVEL")
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", validation_alias="NEWSWATCH_LOG_FORMAT"
    )

    http_connect_timeout: float = Field(10.0, validation_alias="NEWSWATCH_HTTP_CONNECT_TIMEOUT")
    http_read_timeout: float = Field(30.0, validation_alias="NEWSWATCH_HTTP_READ_TIMEOUT")
    http_max_body_bytes: int = Field(
        10 * 1024 * 1024, validation_alias="NEWSWATCH_HTTP_MAX_BODY_BYTES"
    )
    http_max_connections: int = Field(100, validation_alias="NEWSWATCH_HTTP_MAX_CONNECTIONS")
    http_per_host_concurrency: int = Field(
        2, validation_alias="NEWSWATCH_HTTP_PER_HOST_CONCURRENCY"
    )
    http_min_host_delay: float = Field(1.0, validation_alias="NEWSWATCH_HTTP_MIN_HOST_DELAY")
    http_transport: Literal["aiohttp", "httpx"] = Field(
        "aiohttp", validation_alias="NEWSWATCH_HTTP_TRANSPORT"
    )
    http_user_agent: str | None = Field(None, validation_alias="NEWSWATCH_HTTP_USER_AGENT")
    contact_url: str = Field(
        "https://github.com/newswatch/newswatch", validation_alias="NEWSWATCH_CONTACT_URL"
    )

    # Backoff of a failing source: base * 2**(errors-1), capped, with jitter.
    error_backoff_base: float = Field(60.0, validation_alias="NEWSWATCH_ERROR_BACKOFF_BASE")
    error_backoff_max: float = Field(6 * 3600.0, validation_alias="NEWSWATCH_ERROR_BACKOFF_MAX")

    # A source answering 410 Gone this many polls in a row is paused (not polled) until
    # `newswatch sources resume` or an edit of its config entry; 0: never paused.
    gone_pause_after: int = Field(3, ge=0, validation_alias="NEWSWATCH_GONE_PAUSE_AFTER")

    # A poll stores at most this many of a feed's entries not stored yet, newest first; the
    # rest wait for the next polls (sources.pending_entries).
    max_entries_per_poll: int = Field(1000, ge=1, validation_alias="NEWSWATCH_MAX_ENTRIES_PER_POLL")
    # Entries written in one transaction: a poll's entries beyond are written in several, and
    # other sources' writes go in between.
    write_batch_entries: int = Field(500, ge=1, validation_alias="NEWSWATCH_WRITE_BATCH_ENTRIES")

    # The scaled mode (`run --role scheduler|fetch`, Postgres; docs/decisions/0161): sources
    # per poll_batch job, lanes (a host's sources are always in one lane, and a lane's jobs
    # run one at a time: politeness across workers), and jobs a fetch worker runs at once.
    fetch_batch_sources: int = Field(50, ge=1, validation_alias="NEWSWATCH_FETCH_BATCH_SOURCES")
    fetch_lanes: int = Field(64, ge=1, validation_alias="NEWSWATCH_FETCH_LANES")
    fetch_jobs_per_worker: int = Field(4, ge=1, validation_alias="NEWSWATCH_FETCH_JOBS_PER_WORKER")

    # Processes that parse feeds and pages beside the writer; 0 parses in a thread.
    parse_workers: int = Field(
        default_factory=lambda: min(4, os.cpu_count() or 1),
        validation_alias="NEWSWATCH_PARSE_WORKERS",
    )

    # Alert delivery: a notification that fails is retried (backoff base * 2**n, capped, in
    # seconds) until its retry budget is spent, counted from the first failure (a channel's
    # `retry_budget` overrides it); then it is dead. An attempt cap is optional.
    delivery_retry_budget: float = Field(
        24 * 3600.0, gt=0, validation_alias="NEWSWATCH_DELIVERY_RETRY_BUDGET"
    )
    delivery_max_attempts: int | None = Field(
        None, ge=1, validation_alias="NEWSWATCH_DELIVERY_MAX_ATTEMPTS"
    )
    delivery_backoff_base: float = Field(
        30.0, gt=0, validation_alias="NEWSWATCH_DELIVERY_BACKOFF_BASE"
    )
    delivery_backoff_max: float = Field(
        3600.0, gt=0, validation_alias="NEWSWATCH_DELIVERY_BACKOFF_MAX"
    )
    # A claimed notification belongs to its worker this long; then another worker may take it
    # over (its sender died). Longer than any channel's timeout.
    delivery_lease: float = Field(120.0, ge=0, validation_alias="NEWSWATCH_DELIVERY_LEASE")

    # `run --role group` (Postgres, the scaled mode): ungrouped articles grouped per
    # transaction, and how long the grouper waits for a wake-up (NOTIFY) before it looks anyway.
    grouper_batch: int = Field(500, ge=1, validation_alias="NEWSWATCH_GROUPER_BATCH")
    grouper_poll_seconds: float = Field(
        5.0, gt=0, validation_alias="NEWSWATCH_GROUPER_POLL_SECONDS"
    )

    # At most this many notifications per rule in each window of this many seconds; the
    # events beyond are told in one summary per rule, channel and window (docs/alerts.md).
    alert_max_per_rule: int = Field(100, ge=1, validation_alias="NEWSWATCH_ALERT_MAX_PER_RULE")
    alert_cap_window: float = Field(3600.0, gt=0, validation_alias="NEWSWATCH_ALERT_CAP_WINDOW")

    # `newswatch replay` waits this long for queued notifications to be sent before it exits.
    replay_drain_timeout: float = Field(
        60.0, ge=0, validation_alias="NEWSWATCH_REPLAY_DRAIN_TIMEOUT"
    )

    # New and overdue sources are first polled at a random time within this many seconds.
    first_run_spread: float = Field(60.0, validation_alias="NEWSWATCH_FIRST_RUN_SPREAD")

    # Retention in days (0 keeps forever); see newswatch/retention.py. Articles are kept.
    retain_fetches_days: float = Field(30.0, ge=0, validation_alias="NEWSWATCH_RETAIN_FETCHES_DAYS")
    retain_page_urls_days: float = Field(
        180.0, ge=0, validation_alias="NEWSWATCH_RETAIN_PAGE_URLS_DAYS"
    )
    retain_deliveries_days: float = Field(
        90.0, ge=0, validation_alias="NEWSWATCH_RETAIN_DELIVERIES_DAYS"
    )

    http_host: str = Field("0.0.0.0", validation_alias="NEWSWATCH_HTTP_HOST")
    http_port: int = Field(8080, validation_alias="NEWSWATCH_HTTP_PORT")
    api_token: str | None = Field(None, validation_alias="NEWSWATCH_API_TOKEN")
    # Named tokens, "alice:TOKEN1,bob:TOKEN2": each holder's writes (triage marks) are
    # recorded under the token's name (docs/decisions/0202-named-api-tokens.md).
    api_tokens: str | None = Field(None, validation_alias="NEWSWATCH_API_TOKENS")
    # The HTTP API's share of the store: requests that read it at once (each with a connection
    # of its own pool; more wait a moment, then get 503 + Retry-After) and the longest a
    # statement of theirs may run. Ingestion keeps its own connections.
    api_max_concurrent: int = Field(2, ge=1, validation_alias="NEWSWATCH_API_MAX_CONCURRENT")
    api_statement_timeout: float = Field(
        5.0, gt=0, validation_alias="NEWSWATCH_API_STATEMENT_TIMEOUT"
    )
    # /healthz fails when an event loop of `run` has not beaten for this long (api/liveness.py).
    liveness_max_age: float = Field(20.0, gt=0, validation_alias="NEWSWATCH_LIVENESS_MAX_AGE")

    smtp_host: str | None = Field(None, validation_alias="SMTP_HOST")
    smtp_port: int = Field(587, validation_alias="SMTP_PORT")
    smtp_username: str | None = Field(None, validation_alias="SMTP_USERNAME")
    smtp_password: str | None = Field(None, validation_alias="SMTP_PASSWORD")
    smtp_from: str = Field("newswatch@localhost", validation_alias="SMTP_FROM")
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        "starttls", validation_alias="SMTP_SECURITY"
    )
    smtp_timeout: float = Field(30.0, validation_alias="SMTP_TIMEOUT")

    # The base URL users reach the service at (behind a proxy, not the address it binds):
    # emails, webhooks (`url`) and Atom entries link each event's page under it.
    public_url: str | None = Field(None, validation_alias="NEWSWATCH_PUBLIC_URL")

    @field_validator("public_url")
    @classmethod
    def _public_base(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"NEWSWATCH_PUBLIC_URL must be an http(s) URL such as "
                f"https://news.example.org, not {value!r}"
            )
        return value.strip().rstrip("/")

    @field_validator("api_tokens")
    @classmethod
    def _named_tokens(cls, value: str | None) -> str | None:
        parse_named_tokens(value)
        return value

    @model_validator(mode="after")
    def _token_names_one_holder(self) -> Settings:
        if self.api_token and self.api_token in self.named_tokens.values():
            raise ValueError(
                "NEWSWATCH_API_TOKEN is also one of NEWSWATCH_API_TOKENS: a token must "
                "name one holder (give each person a token of their own)"
            )
        return self

    @property
    def named_tokens(self) -> dict[str, str]:
        """NEWSWATCH_API_TOKENS as {name: token}."""
        return parse_named_tokens(self.api_tokens)

    @property
    def token_holders(self) -> dict[str, str | None]:
        """Every accepted API token and whose it is: {token: name}, None for the unnamed
        NEWSWATCH_API_TOKEN. Empty: the API is open."""
        holders: dict[str, str | None] = {t: n for n, t in self.named_tokens.items()}
        if self.api_token:
            holders[self.api_token] = None
        return holders

    @property
    def user_agent(self) -> str:
        if self.http_user_agent:
            return self.http_user_agent
        return f"newswatch/{__version__} (+{self.contact_url})"


# A token's name is recorded as who set a triage mark (store.event_triage.MAX_NAME).
MAX_TOKEN_NAME = 100
TOKEN_NAME = re.compile(r"[A-Za-z0-9._@-]+")


def parse_named_tokens(value: str | None) -> dict[str, str]:
    """ "alice:TOKEN1,bob:TOKEN2" as {name: token}. ValueError naming the entry (by its
    position and name, never its token) when one is malformed, a name is used twice or two
    names share a token."""
    tokens: dict[str, str] = {}
    for position, entry in enumerate((value or "").split(","), start=1):
        entry = entry.strip()
        if not entry:
            continue
        name, colon, token = (part.strip() for part in entry.partition(":"))
        where = f"NEWSWATCH_API_TOKENS entry {position}"
        if not colon or not token:
            raise ValueError(f"{where}: expected NAME:TOKEN")
        if len(name) > MAX_TOKEN_NAME or not TOKEN_NAME.fullmatch(name):
            raise ValueError(
                f"{where}: the name must be 1-{MAX_TOKEN_NAME} letters, digits or . _ @ -"
            )
        if name in tokens:
            raise ValueError(f"{where}: the name {name!r} is given twice")
        if token in tokens.values():
            raise ValueError(f"{where}: {name!r} has the same token as another name")
        tokens[name] = token
    return tokens


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)


# ---------------------------------------------------------------------------------------------
# The YAML file


class SourceConfig(BaseModel):
    """One source to watch."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    url: str
    kind: Literal["auto", "feed", "page", "sitemap"] = "auto"
    interval: timedelta | None = None
    cron: str | None = None
    jitter: timedelta | None = None
    enabled: bool = True
    tags: list[str] = []
    # Web pages (see docs): which links on a listing page are articles.
    full_text: bool = False
    links: str | None = None
    include: str | None = None
    robots: bool = True
    allow_private_networks: bool = False

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"(?i)^https?://[^/\s]+", value.strip()):
            raise ValueError("must be an http:// or https:// URL")
        return value.strip()

    @field_validator("interval", "jitter", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)

    @field_validator("interval")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value.total_seconds() < 10:
            raise ValueError("must be at least 10s")
        return value

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            # Only a config with a cron schedule pays for APScheduler's import (issue 17).
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(value)
            except ValueError as exc:
                raise ValueError(f"invalid cron expression: {exc}") from None
        return value

    @field_validator("include")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return value

    @field_validator("links")
    @classmethod
    def _css(cls, value: str | None) -> str | None:
        if value is not None:
            from cssselect import GenericTranslator, SelectorError

            try:
                GenericTranslator().css_to_xpath(value)
            except SelectorError as exc:
                raise ValueError(f"invalid CSS selector: {exc}") from None
        return value

    @model_validator(mode="after")
    def _one_schedule(self) -> SourceConfig:
        if self.interval is not None and self.cron is not None:
            raise ValueError("give either interval or cron, not both")
        return self


DEFAULT_INTERVAL = timedelta(minutes=15)


class FileConfig(BaseModel):
    """The whole YAML file."""

    model_config = ConfigDict(extra="forbid")

    sources: list[SourceConfig] = []
    grouping: GroupingSettings = GroupingSettings()
    channels: list[ChannelConfig] = []
    rules: list[RuleConfig] = []

    @model_validator(mode="after")
    def _unique_names(self) -> FileConfig:
        for section in ("sources", "channels", "rules"):
            seen: set[str] = set()
            for item in getattr(self, section):
                if item.name in seen:
                    raise ValueError(f"{section}: duplicate name {item.name!r}")
                seen.add(item.name)
        check_rule_channels(self.rules, self.channels)
        return self


@dataclass
class ConfigProblem:
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line else ""
        return f"{self.path}: {self.message}{where}"


class ConfigError(errors.ConfigError):
    """The config file is unusable; `problems` names every place that is wrong (one line
    each, under the count: the whole list is the message)."""

    def __init__(self, file: str, problems: list[ConfigProblem]):
        self.file = file
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s)\n{lines}", where=file)


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(text: str, environ: dict[str, str] | None = None) -> tuple[str, list[str]]:
    """Expand ${VAR} and ${VAR:-default}; return the text and the names left undefined."""
    env = os.environ if environ is None else environ
    missing: list[str] = []

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        missing.append(name)
        return ""

    return _VAR.sub(sub, text), missing


def format_loc(loc: tuple[Any, ...]) -> str:
    """('sources', 2, 'interval') -> 'sources[2].interval'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


class _Lines:
    """The line of a path in the file, found only when an error needs one: reading the file
    builds no line map (composing it is a second parse, see newswatch/safeyaml.py)."""

    def __init__(self, text: str):
        self.text = text
        self._index: dict[tuple[Any, ...], int] | None = None

    def of(self, loc: tuple[Any, ...]) -> int | None:
        if self._index is None:
            self._index = safeyaml.line_index(self.text)
        for end in range(len(loc), -1, -1):
            if loc[:end] in self._index:
                return self._index[loc[:end]]
        return None


def _expand_values(data: Any, path: tuple[Any, ...], missing: list[tuple[tuple, str]]) -> Any:
    """Expand ${VAR} inside string values only: comments are left alone, and a variable's
    value can never change the file's structure."""
    if isinstance(data, str):
        expanded, names = expand_env(data)
        missing.extend((path, name) for name in names)
        return expanded
    if isinstance(data, dict):
        return {k: _expand_values(v, (*path, k), missing) for k, v in data.items()}
    if isinstance(data, list):
        return [_expand_values(v, (*path, i), missing) for i, v in enumerate(data)]
    return data


def parse_config_text(text: str, file: str = "<config>") -> FileConfig:
    """Validate config text; raise ConfigError listing every problem with its path and line."""
    try:
        data = safeyaml.load(text)
    except safeyaml.YamlProblem as exc:
        raise ConfigError(file, [ConfigProblem("(yaml)", exc.message, exc.line)]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(file, [ConfigProblem("(top level)", "must be a mapping")])
    lines = _Lines(text)
    missing: list[tuple[tuple, str]] = []
    data = _expand_values(data, (), missing)
    problems = [
        ConfigProblem(format_loc(path), f"variable ${{{name}}} is not set", lines.of(path))
        for path, name in missing
    ]
    try:
        config = FileConfig.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            message = err["msg"].removeprefix("Value error, ")
            problems.append(ConfigProblem(format_loc(loc), message, lines.of(loc)))
        raise ConfigError(file, problems) from None
    if problems:
        raise ConfigError(file, problems)
    return config


def load_config(path: str | Path | None) -> FileConfig:
    """Load the YAML file; no path means an empty config (sources may come from the CLI)."""
    if path is None:
        return FileConfig()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), [ConfigProblem("(file)", exc.strerror or str(exc))]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            str(p), [ConfigProblem("(file)", f"not UTF-8 at byte {exc.start}")]
        ) from None
    return parse_config_text(text, str(p))
