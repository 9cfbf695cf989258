"""Private files (warehouse/files.py) and where the pseudonym salt comes from (warehouse/pseudonym.py)."""

from __future__ import annotations

import logging
import os

import pytest

from warehouse.files import is_private, private_dir, restrict_umask, write_private
from warehouse.pseudonym import SALT_ENV, SALT_FILE_ENV, SaltError, load_salt


@pytest.fixture(autouse=True)
def _no_salt_env(monkeypatch):
    for k in (SALT_ENV, SALT_FILE_ENV, "PVTRACE_DEMO"):
        monkeypatch.delenv(k, raising=False)


def test_write_private_creates_0600_and_never_overwrites(tmp_path):
    old = os.umask(0)  # even with the most permissive mask
    try:
        path = write_private(tmp_path / "a" / "b" / "secret", "x")
    finally:
        os.umask(old)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "a").stat().st_mode & 0o777) == "0o700" and is_private(tmp_path / "a" / "b")
    with pytest.raises(FileExistsError):
        write_private(path, "y")
    assert path.read_text() == "x"


def test_restrict_umask_only_adds_bits_and_new_files_are_private(tmp_path):
    old = os.umask(0o022)
    try:
        assert restrict_umask() == 0o022
        (tmp_path / "f").write_text("x")
        private_dir(tmp_path / "d")
        assert is_private(tmp_path / "f") and is_private(tmp_path / "d")
        os.umask(0o277)
        restrict_umask()
        assert os.umask(0o277) == 0o277  # a stricter mask is kept
    finally:
        os.umask(old)


def test_salt_from_the_environment_or_a_key_file_outside_the_data_folder(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    wh = data / "pv.duckdb"
    monkeypatch.setenv(SALT_ENV, "an-env-salt-of-enough-length")
    assert load_salt(wh) == "an-env-salt-of-enough-length"
    monkeypatch.setenv(SALT_ENV, "short")
    with pytest.raises(SaltError, match="shorter"):
        load_salt(wh)
    monkeypatch.delenv(SALT_ENV)
    key = write_private(tmp_path / "keys" / "pseudonym.key", "k" * 64 + "\n")
    monkeypatch.setenv(SALT_FILE_ENV, str(key))
    assert load_salt(wh) == "k" * 64
    inside = write_private(data / "pseudonym.key", "k" * 64)
    monkeypatch.setenv(SALT_FILE_ENV, str(inside))
    with pytest.raises(SaltError, match="outside the data folder"):
        load_salt(wh)
    monkeypatch.setenv(SALT_FILE_ENV, str(tmp_path / "missing.key"))
    with pytest.raises(SaltError, match="cannot read"):
        load_salt(wh)
    assert not (data / "pv.duckdb.salt").exists()  # never fell back to the demo salt


def test_the_demo_salt_is_private_stable_and_warns_outside_the_demo(tmp_path, caplog):
    wh = tmp_path / "pv.duckdb"
    with caplog.at_level(logging.WARNING, logger="pvtrace.pseudonym"):
        first = load_salt(wh)
    assert "set one of them in production" in caplog.text
    assert load_salt(wh) == first and len(first) == 64
    assert oct((tmp_path / "pv.duckdb.salt").stat().st_mode & 0o777) == "0o600"
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pvtrace.pseudonym"):
        load_salt(tmp_path / "other.duckdb", demo=True)
    assert caplog.text == ""
