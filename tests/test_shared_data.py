"""The shared corpora's look-up: a test that needs an absent corpus skips, or fails in CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import shared_corpus


def test_an_absent_corpus_skips_outside_ci_and_fails_in_ci(monkeypatch, tmp_path: Path) -> None:
    absent = tmp_path / "grouping" / "absent.jsonl"
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="NEWSWATCH_SHARED_DATA") as skipped:
        shared_corpus(absent)
    assert str(absent) in str(skipped.value)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="shared corpus missing"):
        shared_corpus(absent)
    absent.parent.mkdir()
    absent.write_text("{}\n")
    assert shared_corpus(absent) == absent
