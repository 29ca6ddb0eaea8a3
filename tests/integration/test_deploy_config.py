"""Offline checks of the deployment configuration.

* docker-compose.yml: Compose Specification schema (vendored in
  tests/fixtures/compose-spec.json), healthchecks, start-up ordering, env wiring,
  no default values for secrets;
* services/*/Dockerfile and .dockerignore: structure of the multi-stage builds;
* deploy/ (kustomize): rendered with ``kustomize build`` / ``kubectl kustomize``
  when available, else with tests/fixtures/kustomize_lite.py; every manifest is
  validated with kubernetes-validate and the wiring (probes, env, resources,
  ingress, autoscaling) is checked.

The required environment per process comes from ONE place:
deploy/required-env.yaml (see ``required_env()``).

Needs no network, no Docker daemon and no cluster.
"""

from __future__ import annotations

import copy
import functools
import glob
import http.server
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import jsonschema  # type: ignore[import-untyped, unused-ignore]
import kubernetes_validate
import pytest
import yaml

pytestmark = pytest.mark.deploy

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE_SCHEMA = FIXTURES / "compose-spec.json"
REQUIRED_ENV_FILE = ROOT / "deploy" / "required-env.yaml"
DOCKERIGNORE = ROOT / ".dockerignore"
KUSTOMIZE_BASE = ROOT / "deploy" / "base"
KUSTOMIZE_PRODUCTION = ROOT / "deploy" / "overlays" / "production"
SECRET_EXAMPLE = KUSTOMIZE_BASE / "secret.example.yaml"

KUBERNETES_VERSION = "1.30.0"
APP_SERVICES = ("api", "assets", "worker")
PROCESSES = ("api", "assets", "worker", "migrate")
HTTP_SERVICES = {"api": 8000, "assets": 8001}
MIGRATE_COMMAND = ["python", "-m", "easel_shared.migrate"]
CELERY_QUEUE = "generations"
SECRETS_NAME = "easel-secrets"
CONFIGMAP_NAME = "easel-config"

# Variables that docker-compose.yml must take from the environment with NO
# working default (``${NAME:?message}``).
COMPOSE_SECRET_VARS = (
    "POSTGRES_PASSWORD",
    "ADMIN_TOKEN",
    "URL_SIGNING_SECRET",
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
)
# Container env vars that carry secrets: their compose value must be built
# from a ``${...:?...}`` reference, never a literal.
SECRET_ENV_KEYS = (
    "DATABASE_URL",
    "ADMIN_TOKEN",
    "URL_SIGNING_SECRET",
    "S3_ACCESS_KEY_ID",
    "S3_SECRET_ACCESS_KEY",
    "POSTGRES_PASSWORD",
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
)
DUMMY_ENV = {name: f"dummy-{name.lower().replace('_', '-')}" for name in COMPOSE_SECRET_VARS}


# =========================================================================== helpers
@functools.cache
def required_env() -> dict[str, tuple[str, ...]]:
    """process name -> env var names it refuses to start without."""
    data = yaml.safe_load(REQUIRED_ENV_FILE.read_text())
    assert isinstance(data, dict), f"{REQUIRED_ENV_FILE} must map process -> [VAR, ...]"
    return {name: tuple(names) for name, names in data.items()}


def test_required_env_file_covers_every_process() -> None:
    env = required_env()
    assert set(env) == set(PROCESSES)
    for name, names in env.items():
        assert names and len(set(names)) == len(names), name
        assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", n) for n in names), names
        assert "DATABASE_URL" in names, name
    assert env["migrate"] == ("DATABASE_URL",)


# --------------------------------------------------------------- interpolation
class InterpolationError(ValueError):
    pass


_INTERPOLATION = re.compile(
    r"""
    \$(?:
        (?P<escaped>\$)
      | \{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}
      | (?P<named>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<invalid>)
    )
    """,
    re.VERBOSE,
)


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose-style variable substitution for one string.

    Supports ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
    ``${VAR:?err}``, ``${VAR?err}``, ``${VAR:+alt}``, ``${VAR+alt}``
    (no nesting, which docker-compose.yml does not use).
    """

    def substitute(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        if match.group("invalid") is not None:
            raise InterpolationError(f"invalid interpolation format in {value!r}")
        name = match.group("braced") or match.group("named")
        op, arg = match.group("op"), match.group("arg") or ""
        is_set = name in env
        non_empty = is_set and env[name] != ""
        if op is None:
            return env.get(name, "")
        if op == ":-":
            return env[name] if non_empty else arg
        if op == "-":
            return env[name] if is_set else arg
        if op == ":?":
            if not non_empty:
                raise InterpolationError(f"required variable {name} is missing a value: {arg}")
            return env[name]
        if op == "?":
            if not is_set:
                raise InterpolationError(f"required variable {name} is missing a value: {arg}")
            return env[name]
        if op == ":+":
            return arg if non_empty else ""
        if op == "+":
            return arg if is_set else ""
        raise AssertionError(op)

    return _INTERPOLATION.sub(substitute, value)


def interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_tree(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    return node


def test_interpolator_semantics() -> None:
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate("a$$b ${SET} $SET", env) == "a$b v v"
    assert interpolate("${MISSING:-d}|${EMPTY:-d}|${EMPTY-d}|${MISSING-d}", env) == "d|d||d"
    assert interpolate("${SET:+x}|${EMPTY:+x}|${EMPTY+x}|${MISSING+x}", env) == "x||x|"
    assert interpolate("${SET:?boom}", env) == "v"
    with pytest.raises(InterpolationError, match="boom"):
        interpolate("${EMPTY:?boom}", env)
    with pytest.raises(InterpolationError, match="boom"):
        interpolate("${MISSING?boom}", env)
    assert interpolate("${EMPTY?boom}", env) == ""
    with pytest.raises(InterpolationError):
        interpolate("$-x", env)


# ----------------------------------------------------------------- compose utils
@functools.cache
def compose_raw() -> dict[str, Any]:
    """docker-compose.yml with YAML anchors/merge keys resolved, NOT interpolated."""
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return cast(dict[str, Any], data)


def compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    return cast(dict[str, Any], interpolate_tree(copy.deepcopy(compose_raw()), DUMMY_ENV if env is None else env))


def services() -> dict[str, dict[str, Any]]:
    return cast(dict[str, dict[str, Any]], compose()["services"])


def environment_of(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return dict(env)


def one_shot_services() -> set[str]:
    return {name for name, svc in services().items() if svc.get("restart", "no") == "no"}


def parse_duration(text: str | int) -> float:
    """Compose duration ("1m30s", "660s", "11m") in seconds."""
    if isinstance(text, int):
        return float(text)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"bad duration {text!r}"
    return sum(float(n) * units[u] for n, u in parts)


def healthcheck_test_argv(test: list[str] | str) -> list[str]:
    """Compose/Docker healthcheck `test` -> argv for subprocess."""
    if isinstance(test, str):
        return ["sh", "-c", test]
    kind, *rest = test
    if kind == "CMD-SHELL":
        return ["sh", "-c", rest[0]]
    assert kind == "CMD", test
    return rest


# =============================================================== compose: schema
@functools.cache
def compose_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_compose_file_matches_compose_spec_schema() -> None:
    # The spec marks `version` obsolete; it must not be used.
    assert "version" not in compose_raw()
    errors = sorted(compose_validator().iter_errors(compose()), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_compose_schema_rejects_invalid_files() -> None:
    """Guard against a vacuous schema: known-bad mutations must fail."""
    broken_key = compose()
    broken_key["services"]["api"]["helthcheck"] = {"test": ["CMD", "true"]}
    assert not compose_validator().is_valid(broken_key)

    broken_condition = compose()
    broken_condition["services"]["api"]["depends_on"]["postgres"]["condition"] = "service_ready"
    assert not compose_validator().is_valid(broken_condition)


@pytest.mark.parametrize("name", COMPOSE_SECRET_VARS)
def test_compose_refuses_to_start_without_each_secret(name: str) -> None:
    env = {k: v for k, v in DUMMY_ENV.items() if k != name}
    with pytest.raises(InterpolationError, match=name):
        compose(env)
    with pytest.raises(InterpolationError, match=name):
        compose({**env, name: ""})


def test_compose_secrets_have_no_literal_default() -> None:
    text = COMPOSE_FILE.read_text()
    for name in COMPOSE_SECRET_VARS:
        references = re.findall(r"\$\{" + name + r"([^}]*)\}", text)
        assert references, f"{name} is never taken from the environment"
        for suffix in references:
            assert suffix.startswith(":?"), f"${{{name}{suffix}}} must be ${{{name}:?message}}"

    raw_services = compose_raw()["services"]
    for service_name, service in raw_services.items():
        for key, value in environment_of(service).items():
            if key in SECRET_ENV_KEYS:
                assert isinstance(value, str) and re.search(r"\$\{[A-Z_]+:\?", value), (
                    f"{service_name}.{key} must come from a required ${{VAR:?...}} reference, got {value!r}"
                )


# =============================================================== compose: wiring
def test_every_long_running_compose_service_has_a_healthcheck() -> None:
    long_running = set(services()) - one_shot_services()
    assert {"postgres", "redis", "minio", *APP_SERVICES} <= long_running
    for name in long_running:
        check = services()[name].get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
        assert check["test"] != ["NONE"], name


def test_one_shot_services() -> None:
    assert one_shot_services() == {"minio-init", "migrate"}
    assert services()["migrate"]["command"] == MIGRATE_COMMAND
    init_script = " ".join(services()["minio-init"]["command"])
    assert "mc mb --ignore-existing" in init_script


def test_compose_depends_on_uses_health_or_completion_conditions() -> None:
    one_shots = one_shot_services()
    for name, service in services().items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on must use the long form with conditions"
        for dependency, spec in depends_on.items():
            assert dependency in services(), f"{name} depends on unknown {dependency}"
            condition = spec.get("condition")
            if dependency in one_shots:
                assert condition == "service_completed_successfully", (name, dependency)
            else:
                assert condition == "service_healthy", (name, dependency)
                assert services()[dependency].get("healthcheck"), (name, dependency)


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_wait_for_backing_services_and_migrations(name: str) -> None:
    depends_on = services()[name]["depends_on"]
    assert set(depends_on) >= {"postgres", "redis", "minio-init", "migrate"}
    assert services()["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services()["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", PROCESSES)
def test_compose_service_gets_every_required_env_var(name: str) -> None:
    env = environment_of(services()[name])
    missing = [var for var in required_env()[name] if not env.get(var)]
    assert not missing, f"compose service {name} lacks {missing}"
    if name != "migrate":
        assert env["STORAGE_BACKEND"] == "s3"


def test_compose_backing_services() -> None:
    svc = services()
    assert svc["postgres"]["image"] == "postgres:16"
    assert "pg_isready" in " ".join(svc["postgres"]["healthcheck"]["test"])
    assert svc["redis"]["image"] == "redis:7"
    command = svc["redis"]["command"]
    command = command.split() if isinstance(command, str) else command
    assert command[0] == "redis-server"
    assert "--appendonly" in command and command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert svc["redis"]["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]
    # The S3 credentials are the MinIO root credentials.
    for name in APP_SERVICES:
        env = environment_of(svc[name])
        assert env["S3_ACCESS_KEY_ID"] == DUMMY_ENV["MINIO_ROOT_USER"]
        assert env["S3_SECRET_ACCESS_KEY"] == DUMMY_ENV["MINIO_ROOT_PASSWORD"]
        assert env["DATABASE_URL"].startswith("postgresql+psycopg://easel:dummy-postgres-password@postgres:5432/")
        assert env["REDIS_URL"].startswith("redis://redis:6379/")


def test_compose_worker_is_allowed_to_finish_a_generation() -> None:
    worker = services()["worker"]
    timeout = float(environment_of(worker)["GENERATION_TIMEOUT_SECONDS"])
    assert parse_duration(worker["stop_grace_period"]) > timeout


# ===================================================================== Dockerfiles
def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with line continuations joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        instruction, _, args = full.partition(" ")
        out.append((instruction.upper(), args.strip()))
    assert not pending, f"{path}: dangling line continuation"
    return out


def dockerfile_stages(path: Path) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction, args in dockerfile_instructions(path):
        if instruction == "FROM":
            stages.append([])
        assert stages or instruction == "ARG", f"{path}: {instruction} before FROM"
        if stages:
            stages[-1].append((instruction, args))
    return stages


def copy_flags_and_paths(args: str) -> tuple[dict[str, str], list[str]]:
    flags: dict[str, str] = {}
    tokens = args.split()
    while tokens and tokens[0].startswith("--"):
        key, _, value = tokens.pop(0)[2:].partition("=")
        flags[key] = value
    return flags, tokens


@functools.cache
def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        pattern = pattern.strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                regex += ".*"
                i += 2
            elif pattern[i] == "*":
                regex += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                regex += "[^/]"
                i += 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex += pattern[i : end + 1]
                i = end + 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        rules.append((negate, re.compile(regex + r"\Z")))
    return rules


def dockerignored(relative: str) -> bool:
    """Whether .dockerignore keeps *relative* (a path in the repo) out of the build context."""
    parts = relative.strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negate, regex in dockerignore_rules():
        if any(regex.match(prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def test_dockerignore_rules() -> None:
    for path in (
        ".git/config",
        ".venv/bin/python",
        "uv.lock",
        "services/api/src/easel_api/__pycache__/x.pyc",
        "tests/integration/test_deploy_config.py",
        ".env",
    ):
        assert dockerignored(path), path
    for path in (
        "pyproject.toml",
        "shared/pyproject.toml",
        "shared/src/easel_shared/__init__.py",
        "services/worker/pyproject.toml",
        "services/api/src/easel_api/__init__.py",
    ):
        assert not dockerignored(path), path


@functools.cache
def workspace_member_dirs() -> list[str]:
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    members: list[str] = []
    for pattern in root["tool"]["uv"]["workspace"]["members"]:
        for match in sorted(glob.glob(str(ROOT / pattern))):
            if (Path(match) / "pyproject.toml").is_file():
                members.append(Path(match).relative_to(ROOT).as_posix())
    return members


@pytest.mark.parametrize("name", APP_SERVICES)
def test_dockerfile_is_a_multi_stage_uv_build(name: str) -> None:
    path = ROOT / "services" / name / "Dockerfile"
    stages = dockerfile_stages(path)
    assert len(stages) >= 2
    builder, runtime = stages[0], stages[-1]
    assert builder[0] == ("FROM", "python:3.11-slim AS builder")
    assert runtime[0][1].split()[0] == "python:3.11-slim"

    runs = [args for instruction, args in builder if instruction == "RUN"]
    assert any(re.search(r"\bpip install\b.*\buv\b", run) for run in runs), "uv must be installed with pip"
    syncs = [run for run in runs if "uv sync" in run]
    assert syncs, "builder must run uv sync"
    for sync in syncs:
        assert "--no-dev" in sync and f"--package easel-{name}" in sync, sync
        # uv.lock is not committed: the build must not demand it.
        assert "--frozen" not in sync and "--locked" not in sync, sync
    env_text = " ".join(args for instruction, args in builder if instruction == "ENV")
    assert "UV_PROJECT_ENVIRONMENT=/app/.venv" in env_text

    # Layer caching: all workspace pyproject files are copied before the first
    # `uv sync`; sources only afterwards. Every COPY source is in the context.
    copied_before_sync: list[str] = []
    seen_sync = False
    for instruction, args in builder:
        if instruction == "RUN" and "uv sync" in args:
            seen_sync = True
        if instruction != "COPY":
            continue
        flags, paths = copy_flags_and_paths(args)
        assert "from" not in flags
        for source in paths[:-1]:
            assert (ROOT / source).exists(), f"{path}: COPY source {source} missing"
            assert not dockerignored(source), f"{path}: COPY source {source} is excluded by .dockerignore"
            if not seen_sync:
                assert source.endswith("pyproject.toml") or source.endswith("uv.lock"), (
                    f"{path}: {source} copied before dependencies are installed (breaks layer caching)"
                )
                copied_before_sync.append(source)
    expected = {"pyproject.toml", *(f"{d}/pyproject.toml" for d in workspace_member_dirs())}
    assert set(copied_before_sync) >= expected, f"{path}: uv needs every workspace member's pyproject.toml"
    for source_file in ("shared/src/easel_shared/__init__.py", f"services/{name}/src/easel_{name}/__init__.py"):
        assert not dockerignored(source_file), source_file

    # Runtime: non-root, venv copied with --chown, healthcheck, CMD.
    user = [args for instruction, args in runtime if instruction == "USER"]
    assert user and user[-1].split(":")[0] == "10001"
    copies = [copy_flags_and_paths(args) for instruction, args in runtime if instruction == "COPY"]
    assert copies and all("chown" in flags for flags, _ in copies)
    assert any(flags.get("from") == "builder" and paths[0] == "/app/.venv" for flags, paths in copies)
    assert any(instruction == "HEALTHCHECK" for instruction, _ in runtime)
    cmd = [args for instruction, args in runtime if instruction == "CMD"]
    assert cmd and json.loads(cmd[-1]) == ["python", "-m", f"easel_{name}"]


def dockerfile_healthcheck_argv(name: str) -> list[str]:
    runtime = dockerfile_stages(ROOT / "services" / name / "Dockerfile")[-1]
    (args,) = [args for instruction, args in runtime if instruction == "HEALTHCHECK"]
    cmd = args[args.index("CMD") + 3 :].strip()
    argv = json.loads(cmd)
    assert isinstance(argv, list) and argv[0] != "celery"
    return argv


# =============================================== healthchecks actually work (offline)
class _HealthHandler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[int, type[_HealthHandler]]]:
    handler = type("Handler", (_HealthHandler,), {"status": 200})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()


def _run_check(argv: list[str], env: Mapping[str, str]) -> int:
    argv = [sys.executable if arg == "python" else arg for arg in argv]
    return subprocess.run(argv, env={**os.environ, **env}, capture_output=True, timeout=20).returncode


@pytest.mark.parametrize("name", sorted(HTTP_SERVICES))
def test_http_healthchecks_probe_healthz(name: str, health_server: tuple[int, type[_HealthHandler]]) -> None:
    port, handler = health_server
    default_port = str(HTTP_SERVICES[name])
    port_var = f"{name.upper()}_PORT"
    compose_argv = healthcheck_test_argv(services()[name]["healthcheck"]["test"])
    compose_argv = [arg.replace(f":{default_port}/", f":{port}/") for arg in compose_argv]
    docker_argv = dockerfile_healthcheck_argv(name)
    for argv in (compose_argv, docker_argv):
        handler.status = 200
        assert _run_check(argv, {port_var: str(port)}) == 0, argv
        handler.status = 503
        assert _run_check(argv, {port_var: str(port)}) != 0, argv


def _heartbeat_checks() -> dict[str, list[str]]:
    checks = {
        "compose": healthcheck_test_argv(services()["worker"]["healthcheck"]["test"]),
        "dockerfile": dockerfile_healthcheck_argv("worker"),
    }
    for overlay in (KUSTOMIZE_BASE, KUSTOMIZE_PRODUCTION):
        container = containers_of(find(render(overlay), "Deployment", "worker"))["worker"]
        for probe in ("startupProbe", "livenessProbe"):
            if probe in container:
                checks[f"k8s-{probe}:{overlay.name}"] = container[probe]["exec"]["command"]
    return checks


def test_worker_heartbeat_checks_detect_stale_and_missing_heartbeats(tmp_path: Path) -> None:
    heartbeat = tmp_path / "heartbeat"
    default = "/tmp/easel-worker-heartbeat"
    for where, argv in _heartbeat_checks().items():
        assert "celery" not in " ".join(argv), f"{where}: use the heartbeat file, not celery inspect"
        argv = [arg.replace(default, str(heartbeat)) for arg in argv]
        env = {"WORKER_HEARTBEAT_FILE": str(heartbeat)}
        heartbeat.unlink(missing_ok=True)
        assert _run_check(argv, env) != 0, f"{where}: missing heartbeat must fail"
        heartbeat.touch()
        assert _run_check(argv, env) == 0, f"{where}: fresh heartbeat must pass"
        old = time.time() - 120
        os.utime(heartbeat, (old, old))
        assert _run_check(argv, env) != 0, f"{where}: stale heartbeat must fail"


# ====================================================================== kustomize
def _load_kustomize_lite() -> Any:
    spec = importlib.util.spec_from_file_location("kustomize_lite", FIXTURES / "kustomize_lite.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def kustomize_binary() -> list[str] | None:
    """Real kustomize, if any: `kustomize build` or `kubectl kustomize`."""
    if os.environ.get("EASEL_KUSTOMIZE_LITE") == "1":
        return None
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


def _render_real(directory: Path, command: list[str]) -> list[dict[str, Any]]:
    result = subprocess.run([*command, str(directory)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@functools.cache
def _render_cached(directory: Path) -> tuple[str, str]:
    command = kustomize_binary()
    objects = _render_real(directory, command) if command else _load_kustomize_lite().build(directory)
    return json.dumps(objects), " ".join(command) if command else "kustomize_lite"


def render(directory: Path) -> list[dict[str, Any]]:
    return cast(list[dict[str, Any]], json.loads(_render_cached(directory)[0]))


OVERLAYS = pytest.mark.parametrize("overlay", [KUSTOMIZE_BASE, KUSTOMIZE_PRODUCTION], ids=["base", "production"])


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    hits = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"expected exactly one {kind}/{name}, found {len(hits)}"
    return hits[0]


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return cast(dict[str, Any], obj["spec"]["template"]["spec"])


def containers_of(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = pod_spec(obj)
    return {c["name"]: c for c in spec.get("initContainers", []) + spec["containers"]}


def workloads(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job")]


@functools.cache
def secret_example_keys() -> frozenset[str]:
    secret = yaml.safe_load(SECRET_EXAMPLE.read_text())
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == SECRETS_NAME
    return frozenset({**secret.get("stringData", {}), **secret.get("data", {})})


@OVERLAYS
def test_kustomization_renders(overlay: Path) -> None:
    objects = render(overlay)
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for expected in [
        ("ConfigMap", CONFIGMAP_NAME),
        ("Deployment", "api"),
        ("Deployment", "assets"),
        ("Deployment", "worker"),
        ("Service", "api"),
        ("Service", "assets"),
        ("Ingress", "easel"),
        ("Job", "migrate"),
        ("PodDisruptionBudget", "api"),
        ("PodDisruptionBudget", "assets"),
        ("PodDisruptionBudget", "worker"),
        ("HorizontalPodAutoscaler", "api"),
        ("ScaledObject", "worker"),
    ]:
        assert expected in kinds, f"{overlay.name}: missing {expected}"


def test_kustomize_lite_matches_real_kustomize() -> None:
    command = kustomize_binary()
    if command is None:
        pytest.skip("no kustomize/kubectl binary on PATH; only kustomize_lite is available")
    lite = _load_kustomize_lite()
    for overlay in (KUSTOMIZE_BASE, KUSTOMIZE_PRODUCTION):
        real = {(o["kind"], o["metadata"]["name"]): o for o in _render_real(overlay, command)}
        mine = {(o["kind"], o["metadata"]["name"]): o for o in lite.build(overlay)}
        assert mine.keys() == real.keys()
        for key in real:
            assert mine[key] == real[key], f"{overlay.name}: kustomize_lite differs from {command[0]} for {key}"


@OVERLAYS
def test_manifests_validate_against_kubernetes_schemas(overlay: Path) -> None:
    failures = []
    validated = 0
    for obj in render(overlay):
        if obj["apiVersion"].startswith("keda.sh/"):
            continue  # CRD: no schema in kubernetes-validate; checked below
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
            validated += 1
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as exc:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc}")
    assert not failures, "\n".join(failures)
    assert validated >= 12


def test_kubernetes_validate_is_not_vacuous() -> None:
    deployment = copy.deepcopy(find(render(KUSTOMIZE_BASE), "Deployment", "api"))
    pod_spec(deployment)["containers"][0]["resources"]["limits"]["cpu"] = {"not": "a quantity"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    pod_spec(deployment)["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@OVERLAYS
def test_keda_scaled_object_scales_worker_on_the_celery_queue(overlay: Path) -> None:
    objects = render(overlay)
    scaled = find(objects, "ScaledObject", "worker")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    target = spec["scaleTargetRef"]
    assert target.get("kind", "Deployment") == "Deployment"
    assert target.get("apiVersion", "apps/v1") == "apps/v1"
    worker = find(objects, "Deployment", target["name"])
    assert worker["metadata"]["name"] == "worker"
    assert "replicas" not in worker["spec"], "KEDA owns the worker replica count"
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert set(spec) <= {
        "scaleTargetRef",
        "pollingInterval",
        "cooldownPeriod",
        "initialCooldownPeriod",
        "idleReplicaCount",
        "minReplicaCount",
        "maxReplicaCount",
        "fallback",
        "advanced",
        "triggers",
    }
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "redis"
    meta = trigger["metadata"]
    assert meta["listName"] == CELERY_QUEUE
    assert all(isinstance(v, str) for v in meta.values()), "KEDA trigger metadata values must be strings"
    assert int(meta["listLength"]) > 0
    # The scaler reads the broker address from the worker container's env.
    assert "address" in meta or "addressFromEnv" in meta or "host" in meta
    if "addressFromEnv" in meta:
        container_name = target.get("envSourceContainerName", pod_spec(worker)["containers"][0]["name"])
        assert meta["addressFromEnv"] in env_names(objects, containers_of(worker)[container_name])
        address = configmap(objects)["data"][meta["addressFromEnv"]]
        assert re.fullmatch(r"[A-Za-z0-9.-]+:\d+", address), address


def test_api_hpa_scales_on_cpu() -> None:
    for overlay in (KUSTOMIZE_BASE, KUSTOMIZE_PRODUCTION):
        objects = render(overlay)
        hpa = find(objects, "HorizontalPodAutoscaler", "api")
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"}
        assert any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in hpa["spec"]["metrics"])
        assert "replicas" not in find(objects, "Deployment", "api")["spec"], "the HPA owns api replicas"


# ------------------------------------------------------------------ k8s wiring
def configmap(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return find(objects, "ConfigMap", CONFIGMAP_NAME)


def env_names(objects: list[dict[str, Any]], container: dict[str, Any]) -> set[str]:
    """Names of env vars a container receives (env + envFrom), checking every reference resolves."""
    configmaps = {o["metadata"]["name"]: o.get("data", {}) for o in of_kind(objects, "ConfigMap")}
    names: set[str] = set()
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            ref = source["configMapRef"]["name"]
            assert ref in configmaps, f"envFrom references unknown ConfigMap {ref}"
            names |= {prefix + key for key in configmaps[ref]}
        elif "secretRef" in source:
            assert source["secretRef"]["name"] == SECRETS_NAME
            names |= {prefix + key for key in secret_example_keys()}
    for item in container.get("env", []):
        value_from = item.get("valueFrom", {})
        if "secretKeyRef" in value_from:
            ref = value_from["secretKeyRef"]
            assert ref["name"] == SECRETS_NAME, ref
            assert ref["key"] in secret_example_keys(), f"{ref['key']} missing from secret.example.yaml"
        elif "configMapKeyRef" in value_from:
            ref = value_from["configMapKeyRef"]
            assert ref["key"] in configmaps.get(ref["name"], {}), ref
        else:
            assert "value" in item or value_from, item
        names.add(item["name"])
    return names


def process_workload(objects: list[dict[str, Any]], process: str) -> dict[str, Any]:
    return find(objects, "Job" if process == "migrate" else "Deployment", process)


@OVERLAYS
@pytest.mark.parametrize("process", PROCESSES)
def test_k8s_workload_gets_every_required_env_var(overlay: Path, process: str) -> None:
    objects = render(overlay)
    container = containers_of(process_workload(objects, process))[process]
    missing = set(required_env()[process]) - env_names(objects, container)
    assert not missing, f"{overlay.name}: {process} lacks {sorted(missing)}"
    if process != "migrate":
        assert configmap(objects)["data"]["STORAGE_BACKEND"] == "s3"


@OVERLAYS
def test_secret_values_are_not_in_the_manifests(overlay: Path) -> None:
    objects = render(overlay)
    assert not of_kind(objects, "Secret"), "easel-secrets must be created out of band"
    kustomization = yaml.safe_load((KUSTOMIZE_BASE / "kustomization.yaml").read_text())
    assert "secret.example.yaml" not in kustomization.get("resources", [])
    secret_keys = {name for names in required_env().values() for name in names} & secret_example_keys()
    assert not secret_keys & set(configmap(objects)["data"]), "secrets must not live in the ConfigMap"
    for workload in workloads(objects):
        for container in containers_of(workload).values():
            for item in container.get("env", []):
                if item["name"] in secret_keys:
                    assert "secretKeyRef" in item.get("valueFrom", {}), (workload["metadata"]["name"], item)


@OVERLAYS
def test_http_services_probe_readyz_and_healthz(overlay: Path) -> None:
    objects = render(overlay)
    for name, port in HTTP_SERVICES.items():
        container = containers_of(find(objects, "Deployment", name))[name]
        ports = {p.get("name"): p["containerPort"] for p in container["ports"]}
        assert port in ports.values()
        assert str(port) == configmap(objects)["data"][f"{name.upper()}_PORT"]
        readiness, liveness = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
        assert readiness["path"] == "/readyz"
        assert liveness["path"] == "/healthz"
        for probe in (readiness, liveness):
            assert probe["port"] in (port, *[n for n, p in ports.items() if p == port])
        assert container["command"] == ["python", "-m", f"easel_{name}"]


@OVERLAYS
def test_worker_liveness_and_graceful_shutdown(overlay: Path) -> None:
    objects = render(overlay)
    worker = find(objects, "Deployment", "worker")
    container = containers_of(worker)["worker"]
    command = container["livenessProbe"]["exec"]["command"]
    assert "celery" not in " ".join(command)
    assert "stat" in " ".join(command) and "60" in " ".join(command)
    assert container["command"] == ["python", "-m", "easel_worker"]
    timeout = int(configmap(objects)["data"]["GENERATION_TIMEOUT_SECONDS"])
    assert pod_spec(worker)["terminationGracePeriodSeconds"] > timeout


@OVERLAYS
def test_every_container_has_requests_limits_and_runs_as_non_root(overlay: Path) -> None:
    for workload in workloads(render(overlay)):
        where = f"{overlay.name}: {workload['kind']}/{workload['metadata']['name']}"
        spec = pod_spec(workload)
        assert spec.get("securityContext", {}).get("runAsNonRoot") is True, where
        assert spec["securityContext"].get("runAsUser", 10001) != 0, where
        for name, container in containers_of(workload).items():
            resources = container.get("resources", {})
            for section in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(section, {})), f"{where}/{name}: {section}"
            assert container.get("securityContext", {}).get("allowPrivilegeEscalation") is False, where


@OVERLAYS
def test_ingress_routes_assets_prefix_and_everything_else_to_api(overlay: Path) -> None:
    objects = render(overlay)
    (ingress,) = of_kind(objects, "Ingress")
    routes = {}
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            routes[path["path"]] = (path["pathType"], path["backend"]["service"])
    assert routes["/v1/assets"][0] == "Prefix"
    assert routes["/v1/assets"][1]["name"] == "assets"
    assert routes["/"][0] == "Prefix"
    assert routes["/"][1]["name"] == "api"
    for _, backend in routes.values():
        service = find(objects, "Service", backend["name"])
        port_names = {p.get("name") for p in service["spec"]["ports"]}
        port_numbers = {p["port"] for p in service["spec"]["ports"]}
        assert backend["port"].get("name") in port_names or backend["port"].get("number") in port_numbers


@OVERLAYS
def test_selectors_match_pods(overlay: Path) -> None:
    objects = render(overlay)
    for deployment in of_kind(objects, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for service in of_kind(objects, "Service"):
        selector = service["spec"]["selector"]
        pods = [
            d
            for d in of_kind(objects, "Deployment")
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert [p["metadata"]["name"] for p in pods] == [service["metadata"]["name"]]
        targets = {p.get("name") for p in containers_of(pods[0])[service["metadata"]["name"]]["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in targets or isinstance(port["targetPort"], int)
    for name in APP_SERVICES:
        pdb = find(objects, "PodDisruptionBudget", name)
        labels = find(objects, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
        # A PDB must never block draining a single-replica workload forever.
        if name == "worker":
            assert "maxUnavailable" in pdb["spec"]


@OVERLAYS
def test_migration_job(overlay: Path) -> None:
    objects = render(overlay)
    job = find(objects, "Job", "migrate")
    (container,) = pod_spec(job)["containers"]
    assert container["command"] == MIGRATE_COMMAND
    assert pod_spec(job)["restartPolicy"] in ("Never", "OnFailure")
    api_image = containers_of(find(objects, "Deployment", "api"))["api"]["image"]
    assert container["image"] == api_image, "migrations run from the api image (same code version)"


def test_production_overlay() -> None:
    objects = render(KUSTOMIZE_PRODUCTION)
    for obj in objects:
        assert obj["metadata"].get("namespace") == "easel", f"{obj['kind']}/{obj['metadata']['name']}"
    (ingress,) = of_kind(objects, "Ingress")
    hosts = {rule.get("host") for rule in ingress["spec"]["rules"]}
    assert hosts == {"easel.example.com"}
    (tls,) = ingress["spec"]["tls"]
    assert tls["hosts"] == ["easel.example.com"] and tls["secretName"]
    base = {(o["kind"], o["metadata"]["name"]): o for o in render(KUSTOMIZE_BASE)}
    for name in APP_SERVICES:
        prod_container = containers_of(find(objects, "Deployment", name))[name]
        base_container = containers_of(base[("Deployment", name)])[name]
        assert prod_container["image"] != base_container["image"]
        assert not prod_container["image"].endswith((":dev", ":latest"))
        for section in ("requests", "limits"):
            assert _memory_bytes(prod_container["resources"][section]["memory"]) > _memory_bytes(
                base_container["resources"][section]["memory"]
            ), f"{name}: production {section} should be larger"
    assert find(objects, "Deployment", "assets")["spec"]["replicas"] >= 2
    assert find(objects, "HorizontalPodAutoscaler", "api")["spec"]["minReplicas"] >= 2
    base_ns = {o["metadata"].get("namespace") for o in base.values()}
    assert base_ns == {None}, "the base must stay namespace-less"


def _memory_bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 10**3, "M": 10**6, "G": 10**9, "": 1}
    match = re.fullmatch(r"(\d+)([KMGT]i?|)", quantity)
    assert match, quantity
    return int(match.group(1)) * units[match.group(2)]


# =========================================================== compose <-> kustomize
def _image_repo(reference: str) -> str:
    reference = reference.split("@", 1)[0]
    last = reference.rsplit("/", 1)[-1]
    return reference.rsplit(":", 1)[0] if ":" in last else reference


def test_image_names_are_consistent_between_compose_and_kustomize() -> None:
    kustomization = yaml.safe_load((KUSTOMIZE_BASE / "kustomization.yaml").read_text())
    kustomize_images = {image["name"] for image in kustomization["images"]}
    base = render(KUSTOMIZE_BASE)
    compose_images = {}
    for name in APP_SERVICES:
        service = services()[name]
        build = service["build"]
        assert build["context"] == "." and build["dockerfile"] == f"services/{name}/Dockerfile"
        repo = _image_repo(service["image"])
        compose_images[name] = repo
        assert repo in kustomize_images, f"compose image {repo} not in deploy/base images"
        container = containers_of(find(base, "Deployment", name))[name]
        assert _image_repo(container["image"]) == repo
        # Same default tag everywhere, so a locally built image runs on a dev cluster.
        assert service["image"] == container["image"], (service["image"], container["image"])
    assert set(compose_images.values()) == kustomize_images
    assert services()["migrate"]["image"] == services()["api"]["image"]
    assert "build" not in services()["migrate"], "migrate reuses the api image instead of building it twice"


def test_env_example_documents_every_compose_secret() -> None:
    text = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))
    referenced = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE_FILE.read_text()))
    assert referenced <= documented, f".env.example misses {sorted(referenced - documented)}"
    # Example values only, never something that looks like a real secret.
    for name in COMPOSE_SECRET_VARS:
        value = re.search(rf"^{name}=(.*)$", text, flags=re.MULTILINE)
        assert value and "change-me" in value.group(1), name
