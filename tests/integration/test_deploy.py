"""docker-compose.yml, the Dockerfile and .env.example, checked without a Docker engine.

CI validates the compose file with ``docker-compose config`` (.ci/run). These tests go
further: they read the compose file and the Dockerfile, resolve ``${VARIABLES}`` from
.env.example the way compose does, and run every service of our image *natively* with
the same entry point, command and environment, then run its healthcheck. Only what a
container would get from Docker changes: service hostnames point at this test's Redis,
SQLite file and emulator, ``/data`` is a temporary folder, fixed ports are free ones. A
typo in a compose command, an option the CLI lacks or a broken healthcheck fails here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tasks import migrate
from tasks.jobs import transcribe
from tasks.models import JobStatus
from tasks.settings import ENV_NAMES
from tests.fixtures.services import ROOT, free_port, wait_for
from tests.fixtures.stack import Stack
from workers.emulator.cli import READY_PREFIX

COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
# Values .env.example leaves empty on purpose (no default password); CI fills in dummies.
REQUIRED_SECRETS = {"POSTGRES_PASSWORD": "compose-test", "FLOWER_BASIC_AUTH": "ops:compose-test"}
# Services built from our Dockerfile, and the ports they listen on inside the container.
OUR_PORTS = {"flower": 5555, "emulator": 8089}
# Services that run once and exit 0 (the others wait for them: service_completed_successfully).
ONE_SHOT = {"migrate"}

_VARIABLE = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


class MissingVariable(LookupError):
    """A ``${NAME:?message}`` whose variable is unset or empty: compose refuses to run."""


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's ``${NAME}``, ``${NAME:-default}``, ``${NAME-default}``, ``${NAME:?err}``;
    ``$$`` is a literal ``$``. Applied to every string in a loaded YAML tree."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match.groups()
        current = env.get(name)
        if op == ":-":
            return current or arg
        if op == "-":
            return arg if current is None else current
        if op in (":?", "?") and (current is None or (op == ":?" and current == "")):
            raise MissingVariable(f"{name}: {arg}")
        return current or ""

    parts = value.split("$$")
    return "$".join(_VARIABLE.sub(substitute, part) for part in parts)


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def compose_raw() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def compose_resolved(**overrides: str) -> dict[str, Any]:
    env = {**read_env_file(ENV_EXAMPLE), **REQUIRED_SECRETS, **overrides}
    resolved: dict[str, Any] = interpolate(compose_raw(), env)
    return resolved


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            pairs.append((instruction.upper(), rest.strip()))
    return pairs


def exec_form(instructions: list[tuple[str, str]], name: str) -> list[str]:
    (value,) = [rest for instruction, rest in instructions if instruction == name][-1:]
    parsed = json.loads(value)  # exec form: a JSON array, so signals reach the process
    assert isinstance(parsed, list)
    return [str(p) for p in parsed]


# -- static checks ------------------------------------------------------------------------


def test_compose_services_volumes_healthchecks_and_dependencies() -> None:
    compose = compose_resolved()
    services = compose["services"]
    assert set(services) == {
        "redis",
        "rabbitmq",
        "postgres",
        "migrate",
        "worker",
        "beat",
        "flower",
        "emulator",
    }
    # The RabbitMQ broker is opt-in (docs/operations.md, "Choosing a broker"): 3.13+ with the
    # management plugin, in its own profile, and the broker URL follows .env.
    rabbitmq = services["rabbitmq"]
    assert rabbitmq["profiles"] == ["rabbitmq"]
    assert rabbitmq["image"].startswith("rabbitmq:3.13") and "management" in rabbitmq["image"]
    assert services["worker"]["environment"]["STT_BROKER_URL"] == "redis://redis:6379/0"
    redis_command = services["redis"]["command"]
    assert redis_command[redis_command.index("--appendonly") + 1] == "yes"
    volumes = set(compose["volumes"])
    for name, service in services.items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            assert source in volumes, f"{name}: {source} is not a named volume"
        for target, condition in service.get("depends_on", {}).items():
            if target in ONE_SHOT:
                assert condition == {"condition": "service_completed_successfully"}, name
                continue
            assert condition == {"condition": "service_healthy"}, name
            assert "healthcheck" in services[target], f"{name} waits on {target}'s health"
    # The schema is migrated once, before anything that uses the broker or the database.
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["restart"] == "no"
    for name in ("worker", "beat", "flower"):
        assert "migrate" in services[name]["depends_on"], f"{name} must wait for migrate"
    assert "redis-data" in volumes and "postgres-data" in volumes
    assert services["postgres"]["healthcheck"]["test"][1] == "pg_isready"
    assert services["redis"]["healthcheck"]["test"][1:] == ["redis-cli", "ping"]
    # A worker must scale: nothing that names or pins one container.
    assert not {"container_name", "ports", "hostname"} & set(services["worker"])
    assert services["emulator"]["profiles"] == ["dev"]
    optional = {"emulator", "rabbitmq"}
    assert all(s.get("profiles") is None for n, s in services.items() if n not in optional)
    flower_command = services["flower"]["command"]
    assert flower_command[flower_command.index("--db") + 1].startswith("/data/")
    assert any(m.endswith(":/data") for m in services["flower"]["volumes"])
    # Only the workers hold the key; beat and Flower never see it.
    assert {n for n, s in services.items() if "AIML_API_KEY" in s.get("environment", {})} == {
        "worker"
    }
    assert "STT_DATABASE_URL" in services["migrate"]["environment"]


def test_secrets_have_no_default_and_env_example_lists_every_variable() -> None:
    text = COMPOSE_FILE.read_text()
    for name in ("FLOWER_BASIC_AUTH", "POSTGRES_PASSWORD", "AIML_API_KEY"):
        for match in re.finditer(r"\$\{" + name + r"([^}]*)\}", text):
            assert match.group(1).startswith(":?"), f"{name} must be required, no default"
    example = ENV_EXAMPLE.read_text()
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, re.MULTILINE))
    assert set(ENV_NAMES.values()) <= listed, set(ENV_NAMES.values()) - listed
    assert {m.group(1) for m in _VARIABLE.finditer(text)} <= listed
    assert {"STT_WORKER_CONCURRENCY", "STT_WORKER_POOL", "COMPOSE_PROFILES"} <= listed
    values = read_env_file(ENV_EXAMPLE)
    assert values["FLOWER_BASIC_AUTH"] == "" and values["POSTGRES_PASSWORD"] == ""
    with pytest.raises(MissingVariable, match="FLOWER_BASIC_AUTH"):
        interpolate(compose_raw(), {**values, "POSTGRES_PASSWORD": "x"})
    # .env holds the real values: ignored by git and by the image build.
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    assert ".env" in (ROOT / ".dockerignore").read_text().split()
    # The dev profile points the workers at the emulator service.
    worker_env = compose_resolved()["services"]["worker"]["environment"]
    assert worker_env["AIML_API_BASE"] == "http://emulator:8089"
    assert values["COMPOSE_PROFILES"] == "dev"


def test_dockerfile_is_slim_non_root_keyless_with_one_entry_point() -> None:
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    users = [rest for instruction, rest in instructions if instruction == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert exec_form(instructions, "ENTRYPOINT") == ["stt-workers"]
    assert exec_form(instructions, "CMD") == ["worker"]
    for instruction, rest in instructions:
        if instruction in ("ENV", "ARG", "LABEL"):
            assert not re.search(r"KEY|PASSWORD|SECRET|TOKEN|BASIC_AUTH", rest), rest
    runs = " ".join(rest for instruction, rest in instructions if instruction == "RUN")
    assert "'.[postgres]'" in runs
    # Dependencies are installed before the code is copied, for layer caching.
    copies = [i for i, (instruction, rest) in enumerate(instructions) if instruction == "COPY"]
    first_code = min(i for i in copies if "tasks" in instructions[i][1])
    first_install = min(
        i for i, (ins, rest) in enumerate(instructions) if ins == "RUN" and "pip install" in rest
    )
    assert first_install < first_code


# -- every service of our image, run natively ------------------------------------------------


@dataclass
class NativeService:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str]
    healthcheck: list[str] | None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited {self.process.returncode}:\n{self.log()}")
        return True


def _native(value: str, data_dir: Path, ports: Mapping[int, int]) -> str:
    """What Docker would provide, on this machine: /data is a folder, ports are free ones."""
    value = value.replace("/data/", f"{data_dir}/")
    for inside, outside in ports.items():
        value = re.sub(rf"(?<=:){inside}\b|^{inside}$", str(outside), value)
    return value


def _healthcheck(service: dict[str, Any], native: Callable[[str], str]) -> list[str] | None:
    test = service.get("healthcheck", {}).get("test")
    if test is None:
        return None
    kind, *rest = test
    if kind == "CMD-SHELL":
        return ["sh", "-c", native(rest[0])]
    assert kind == "CMD"
    return [native(part) for part in rest]


@pytest.fixture
def native_services(
    make_stack: Callable[..., Stack], tmp_path: Path
) -> Iterator[tuple[Stack, dict[str, NativeService]]]:
    # A fresh database per run; the migrate service creates its schema, as in compose.
    stack = make_stack(start_worker=False)
    database = stack.env["STT_DATABASE_URL"].removeprefix("sqlite:///")
    assert not Path(database).exists()
    compose = compose_resolved()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    ports = {inside: free_port() for inside in OUR_PORTS.values()}
    entrypoint = exec_form(dockerfile_instructions(), "ENTRYPOINT")
    binary = Path(sys.executable).parent / entrypoint[0]
    # Service hostnames (redis, postgres, emulator) only resolve inside compose's network.
    hosts = {
        "STT_BROKER_URL": stack.env["STT_BROKER_URL"],
        "STT_DATABASE_URL": stack.env["STT_DATABASE_URL"],
        "AIML_API_BASE": stack.env["AIML_API_BASE"],
        "AIML_API_KEY": stack.env["AIML_API_KEY"],
    }
    started: dict[str, NativeService] = {}
    for name, service in compose["services"].items():
        if "build" not in service:
            continue  # redis and postgres are upstream images
        environment = {k: str(v) for k, v in service.get("environment", {}).items()}
        env = {
            "PATH": f"{binary.parent}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": str(ROOT),
            "HOSTNAME": socket.gethostname(),  # Docker sets it to the container's hostname
            **environment,
            **{k: v for k, v in hosts.items() if k in environment},
        }
        native = lambda v: _native(v, data_dir, ports)  # noqa: E731
        argv = [str(binary), *entrypoint[1:], *[native(a) for a in service["command"]]]
        log_path = tmp_path / f"{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                argv, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT
            )
        if name in ONE_SHOT:
            # What service_completed_successfully means: it ends, with 0, before the rest.
            output = (process.wait(120), log_path.read_text())
            assert output[0] == 0, f"{name} exited {output[0]}:\n{output[1]}"
            if name == "migrate":
                assert f"schema upgraded from none to {migrate.head()}" in output[1]
            continue
        started[name] = NativeService(name, process, log_path, env, _healthcheck(service, native))
    started["flower"].env["FLOWER_URL"] = f"http://127.0.0.1:{ports[OUR_PORTS['flower']]}"
    yield stack, started
    for service in started.values():
        if service.process.poll() is None:
            service.process.terminate()
            try:
                service.process.wait(20)
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait(10)


READY = {
    "worker": lambda s: " ready." in s.log(),
    "beat": lambda s: "beat: Starting..." in s.log(),
    "flower": lambda s: "Visit me at" in s.log(),
    "emulator": lambda s: READY_PREFIX in s.log(),
}


def test_every_compose_service_of_our_image_runs_natively_and_passes_its_healthcheck(
    native_services: tuple[Stack, dict[str, NativeService]],
) -> None:
    stack, services = native_services
    assert set(services) == set(READY) == {"worker", "beat", "flower", "emulator"}
    for name, service in services.items():
        wait_for(lambda s=service, n=name: s.alive() and READY[n](s), 90, f"{name} to start")  # type: ignore[misc]
    worker = services["worker"]
    # Concurrency and pool come from .env.example through the environment.
    assert "concurrency: 16 (thread)" in worker.log()
    for name, service in services.items():
        if service.healthcheck is None:
            continue
        result = subprocess.run(
            service.healthcheck, env=service.env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, (name, shlex.join(service.healthcheck), result)
    flower_url = services["flower"].env["FLOWER_URL"]
    assert requests.get(f"{flower_url}/api/workers", timeout=10).status_code == 401
    # The compose worker serves a real job end to end.
    handle = transcribe("https://media.example.org/compose/one.mp3", "aai/slam-1")
    assert handle.wait(timeout=60).status is JobStatus.COMPLETED
    assert services["beat"].alive() and (services["beat"].env.get("AIML_API_KEY") is None)
    assert list((stack.workdir / "data").glob("celerybeat-schedule*")), "beat's state in /data"
