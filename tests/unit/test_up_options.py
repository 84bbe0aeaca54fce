"""`drift-retrain up --database/--redis` refuses what it cannot use in one line, before starting anything, and
never echoes a password."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from drift_retrain.cli import app


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--database", "mysql://u:s3cret@db/x"],
            "--database takes a postgresql:// or postgresql+asyncpg:// URL (scheme 'mysql' given)",
        ),
        (
            ["--database", "postgresql://u:s3cret@db/x", "--redis", "memory://s3cret"],
            "--redis takes a redis:// or rediss:// URL (scheme 'memory' given)",
        ),
        (["--redis", "redis://:s3cret@r:6379/0"], "--redis needs --database"),
    ],
)
def test_up_refuses_a_wrong_url_in_one_line_and_starts_nothing(
    args: list[str], message: str, settings, tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, ["up", "-c", str(settings.source_file), *args])
    assert result.exit_code == 2
    assert result.output.strip().startswith(message), result.output
    assert "s3cret" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not (settings.state_dir / "logs").exists()


def test_the_database_url_comes_from_the_environment_too(settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFT_RETRAIN_DATABASE_URL", "sqlite:///s3cret.db")
    result = CliRunner().invoke(app, ["up", "-c", str(settings.source_file)])
    assert result.exit_code == 2
    assert (
        result.output.strip() == "--database takes a postgresql:// or postgresql+asyncpg:// URL (scheme 'sqlite' given)"
    )


def test_the_lines_the_scale_out_page_shows_are_what_up_prints_for_its_urls() -> None:
    """docs/scale-out.md shows `up`'s database and redis lines for the URLs its example exports: the same masking."""
    from drift_retrain.devstack.services import checked_database_url, checked_redis_url, mask_url

    page = (Path(__file__).parents[2] / "docs" / "scale-out.md").read_text(encoding="utf-8")
    database = re.search(r"export DRIFT_RETRAIN_DATABASE_URL='([^']+)'", page)
    redis = re.search(r"drift-retrain up --redis (\S+)", page)
    shown = re.search(r"```\n(database    .+\nredis       .+)\n```", page)
    assert database and redis and shown
    # The lines as cli.up prints them (typer.echo(f"database    {mask_url(database_url)}") and the redis one).
    printed = f"database    {mask_url(checked_database_url(database[1]))}\nredis       {mask_url(checked_redis_url(redis[1]))}"
    assert shown[1] == printed
    assert "PASSWORD" not in printed
