"""A misconfigured process stops at once with one readable line, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from easel_shared.settings import Settings

pytestmark = pytest.mark.integration

SERVICES = ["easel_api", "easel_worker", "easel_assets"]


def clean_env(tmp_path: Path, **values: str) -> dict[str, str]:
    """The current environment without any Easel setting, plus `values`."""
    fields = {name.lower() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.lower() not in fields}
    env.update({
        "DATABASE_URL": f"sqlite:///{tmp_path / 'never-used.db'}",
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "LOCAL_STORAGE_DIR": str(tmp_path / "objects"),
        "URL_SIGNING_SECRET": "a-signing-secret-of-some-length",
        "ADMIN_TOKEN": "an-admin-token-of-some-length",
        "STORAGE_BACKEND": "local",
    })
    for key, value in values.items():
        if value == "":
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run(module: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([sys.executable, "-m", module], env=env, cwd=cwd, capture_output=True, text=True,
                              timeout=60, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"python -m {module} started despite the bad configuration", pytrace=False)


def assert_one_line_about(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_api_without_admin_token(tmp_path: Path) -> None:
    result = run("easel_api", clean_env(tmp_path, ADMIN_TOKEN=""), tmp_path)
    assert_one_line_about(result, "ADMIN_TOKEN")


@pytest.mark.parametrize("module", SERVICES)
def test_missing_signing_secret(module: str, tmp_path: Path) -> None:
    # Every service signs or serves short-lived file links; only the api checks admin tokens.
    result = run(module, clean_env(tmp_path, URL_SIGNING_SECRET=""), tmp_path)
    assert_one_line_about(result, "URL_SIGNING_SECRET")


def test_api_names_every_missing_setting(tmp_path: Path) -> None:
    result = run("easel_api", clean_env(tmp_path, ADMIN_TOKEN="", URL_SIGNING_SECRET=""), tmp_path)
    assert_one_line_about(result, "ADMIN_TOKEN", "URL_SIGNING_SECRET")


def test_short_admin_token(tmp_path: Path) -> None:
    result = run("easel_api", clean_env(tmp_path, ADMIN_TOKEN="short"), tmp_path)
    assert_one_line_about(result, "ADMIN_TOKEN")


@pytest.mark.parametrize("module", SERVICES)
def test_s3_without_credentials(module: str, tmp_path: Path) -> None:
    env = clean_env(tmp_path, STORAGE_BACKEND="s3", S3_ENDPOINT_URL="http://127.0.0.1:1")
    result = run(module, env, tmp_path)
    assert_one_line_about(result, "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY")


@pytest.mark.parametrize("module", SERVICES)
def test_unknown_storage_backend(module: str, tmp_path: Path) -> None:
    result = run(module, clean_env(tmp_path, STORAGE_BACKEND="ftp"), tmp_path)
    assert_one_line_about(result, "STORAGE_BACKEND")
