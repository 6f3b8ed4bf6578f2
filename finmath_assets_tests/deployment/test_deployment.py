"""docker/ and CI, validated statically (no Docker engine runs here): the real Compose binary
renders every compose file, hadolint lints every Dockerfile, promtool checks the stack's
Prometheus configs, and the wiring between them (build paths, mounts, health checks, secrets)
is checked on Compose's own rendering of the stack."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from finmath_assets_tests.conftest import compose_example_env

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "docker-compose.yml"
OVERRIDES = sorted((DOCKER / "scale-out").glob("docker-compose.*.yml"))
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
BIN = Path(sys.executable).parent
STACK = {
    "postgres",
    "mlflow",
    "user-code",
    "dagster-webserver",
    "dagster-daemon",
    "inference",
    "prometheus",
    "grafana",
}


def _compose(*args: str, files: list[Path] | None = None, env: dict | None = None, cwd=DOCKER):
    files = files or [COMPOSE_FILE]
    command = [str(BIN / "docker-compose")]
    for file in files:
        command += ["-f", str(file)]
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        # only what the test passes: no docker/.env of a developer, no shell variables
        env={"PATH": "/usr/bin:/bin", "HOME": str(cwd), **(env or {})},
    )


@pytest.fixture(scope="module")
def stack() -> dict:
    """The stack as Compose renders it with the example environment."""
    result = _compose("config", "--format", "json", env=compose_example_env())
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# --- Compose ----------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides", [[], *[[o] for o in OVERRIDES]], ids=lambda o: str(o))
def test_compose_config_is_valid(overrides: list[Path]) -> None:
    result = _compose(
        "config", "--quiet", files=[COMPOSE_FILE, *overrides], env=compose_example_env()
    )
    assert result.returncode == 0, result.stderr


def test_a_broken_compose_file_fails_validation(tmp_path: Path) -> None:
    text = COMPOSE_FILE.read_text()
    broken = {
        "unknown dependency": text.replace(
            "mlflow:\n        condition", "mlfow:\n        condition"
        ),
        "unknown key": text.replace("    healthcheck:", "    healthchek:", 1),
        "bad yaml": text.replace("\nservices:\n", "\nservices: [\n", 1),
    }
    for name, content in broken.items():
        assert content != text, name
        case = tmp_path / name.replace(" ", "-")
        shutil.copytree(DOCKER, case)
        (case / "docker-compose.yml").write_text(content)
        result = _compose(
            "config",
            "--quiet",
            files=[case / "docker-compose.yml"],
            env=compose_example_env(),
            cwd=case,
        )
        assert result.returncode != 0, f"{name}: Compose accepted a broken file"


def test_compose_refuses_to_start_without_the_secrets() -> None:
    env = {k: v for k, v in compose_example_env().items() if not k.endswith("PASSWORD")}
    result = _compose("config", "--quiet", env=env)
    assert result.returncode != 0
    assert "set POSTGRES_PASSWORD in docker/.env" in result.stderr
    assert "set GRAFANA_ADMIN_PASSWORD in docker/.env" in result.stderr


def test_no_secret_is_written_in_the_repository(stack: dict) -> None:
    sentinel = "s3cret-from-env-only"
    env = {
        **compose_example_env(),
        "POSTGRES_PASSWORD": sentinel,
        "GRAFANA_ADMIN_PASSWORD": sentinel,
    }
    rendered = _compose("config", "--format", "json", env=env)
    assert sentinel in rendered.stdout  # the password reaches the services from the environment
    for path in [COMPOSE_FILE, *OVERRIDES, DOCKER / "dagster" / "dagster.yaml"]:
        text = path.read_text()
        assert "change-me" not in text, path
        for match in re.finditer(r"(?im)^\s*[\w-]*(password|secret)[\w-]*:[ \t]*(.*)$", text):
            value = match.group(2).strip()
            assert value == "" or value.startswith("${"), match.group(0)
    assert "docker/.env" in (ROOT / ".gitignore").read_text().splitlines()
    assert "docker/.env" in (ROOT / ".dockerignore").read_text()


def test_every_variable_the_compose_files_read_is_documented_in_env_example() -> None:
    used = set()
    for path in [COMPOSE_FILE, *OVERRIDES]:
        used |= set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)", path.read_text()))
    assert used - set(compose_example_env()) == set()


def test_the_stack_has_every_service_with_health_checks_and_ordered_start(stack: dict) -> None:
    services = stack["services"]
    assert set(services) == STACK
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        for dependency, how in service.get("depends_on", {}).items():
            assert dependency in services, (name, dependency)
            assert how["condition"] in {"service_healthy", "service_started"}, (name, dependency)
    healthy = {
        name: {
            d for d, how in s.get("depends_on", {}).items() if how["condition"] == "service_healthy"
        }
        for name, s in services.items()
    }
    assert healthy["mlflow"] == {"postgres"}
    assert healthy["user-code"] == {"postgres", "mlflow"}
    assert {"postgres", "user-code"} <= healthy["dagster-webserver"]
    assert {"postgres", "user-code"} <= healthy["dagster-daemon"]
    assert healthy["inference"] == {"mlflow"}
    assert healthy["grafana"] == {"prometheus"}


def test_services_share_what_they_must_and_only_user_code_has_the_warehouse(stack: dict) -> None:
    services = stack["services"]

    def mounts(name: str) -> dict[str, str]:
        return {v["target"]: v["source"] for v in services[name].get("volumes", [])}

    # the inference log and drift summary travel on FINMATH_HOME; the API never opens DuckDB,
    # so sharing the folder keeps one writer of the warehouse file
    assert mounts("user-code")["/var/lib/finmath"] == mounts("inference")["/var/lib/finmath"]
    for name in STACK - {"user-code", "inference"}:
        assert "/var/lib/finmath" not in mounts(name), name
    for name in ("user-code", "dagster-webserver", "dagster-daemon"):
        assert mounts(name)["/opt/dagster/logs"] == "dagster-logs"
    for name in ("user-code", "inference"):
        env = services[name]["environment"]
        assert env["FINMATH_MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        assert env["FINMATH_HOME"] == "/var/lib/finmath"
    postgres_env = services["postgres"]["environment"]
    for name in ("user-code", "dagster-webserver", "dagster-daemon"):
        env = services[name]["environment"]
        assert env["DAGSTER_PG_HOST"] == "postgres"
        assert env["DAGSTER_PG_PASSWORD"] == postgres_env["POSTGRES_PASSWORD"]
        assert env["DAGSTER_PG_DB"] == postgres_env["POSTGRES_DB"]
    backend = services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"]
    assert backend.startswith("postgresql+psycopg2://") and backend.endswith(
        "@postgres:5432/mlflow"
    )
    init = DOCKER / "postgres" / "10-create-mlflow-db.sql"
    assert "CREATE DATABASE mlflow" in init.read_text()
    assert mounts("postgres")["/docker-entrypoint-initdb.d"] == str(init.parent)


def test_builds_point_at_dockerfiles_and_targets_that_exist(stack: dict) -> None:
    for name, service in stack["services"].items():
        build = service.get("build")
        if build is None:
            if service["image"].startswith("finmath/"):  # one of ours, built by another service
                assert service["image"] in {
                    s["image"] for s in stack["services"].values() if "build" in s
                }, name
            else:  # a public image, pinned
                assert ":" in service["image"] and not service["image"].endswith(":latest"), name
            continue
        assert Path(build["context"]) == ROOT, name
        dockerfile = ROOT / build["dockerfile"]
        assert dockerfile.is_file(), name
        if "target" in build:
            assert re.search(rf"^FROM .+ AS {build['target']}$", dockerfile.read_text(), re.M)
    # the daemon reuses the webserver's image instead of building it twice
    daemon, webserver = stack["services"]["dagster-daemon"], stack["services"]["dagster-webserver"]
    assert daemon["image"] == webserver["image"]


def test_monitoring_services_mount_the_validated_configs(stack: dict) -> None:
    services = stack["services"]
    prometheus = {v["target"]: v["source"] for v in services["prometheus"]["volumes"]}
    assert prometheus["/etc/prometheus"] == str(DOCKER / "prometheus")
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    config = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    (target,) = config["scrape_configs"][0]["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert host in services and f"{port}/tcp" in _exposed_ports(DOCKER / "inference.Dockerfile")
    grafana = {v["target"]: v["source"] for v in services["grafana"]["volumes"]}
    assert grafana["/etc/grafana/provisioning"] == str(DOCKER / "grafana" / "provisioning")
    provider = yaml.safe_load(
        (DOCKER / "grafana" / "provisioning" / "dashboards" / "finmath.yml").read_text()
    )
    dashboards_path = provider["providers"][0]["options"]["path"]
    assert grafana[dashboards_path] == str(DOCKER / "grafana" / "dashboards")


def test_prometheus_configs_of_the_stack_pass_promtool(promtool: str, tmp_path: Path) -> None:
    # the replicas override mounts alerts.yml beside its own config, as Compose does
    for config in (
        DOCKER / "prometheus" / "prometheus.yml",
        DOCKER / "scale-out" / "prometheus.replicas.yml",
    ):
        shutil.copy(config, tmp_path / "prometheus.yml")
        shutil.copy(DOCKER / "prometheus" / "alerts.yml", tmp_path / "alerts.yml")
        result = subprocess.run(
            [promtool, "check", "config", "prometheus.yml"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout + result.stderr


# --- Dockerfiles ------------------------------------------------------------------------------


def _hadolint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "hadolint"), "--no-color", "--config", str(ROOT / ".hadolint.yaml"), str(path)],
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(dockerfile: Path) -> None:
    result = _hadolint(dockerfile)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_fails_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nCMD uvicorn app:app\n")
    result = _hadolint(bad)
    assert result.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3025"):
        assert rule in result.stdout, result.stdout


def _stages(dockerfile: Path) -> dict[str, list[str]]:
    """Instructions per stage (continuation lines joined), keyed by stage name."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            name = line.split(" AS ")[-1] if " AS " in line else f"stage{len(stages)}"
            current = stages.setdefault(name, [])
        current.append(line)
    return stages


def _exposed_ports(dockerfile: Path) -> set[str]:
    final = list(_stages(dockerfile).values())[-1]
    return {f"{p}/tcp" for line in final if line.startswith("EXPOSE ") for p in line.split()[1:]}


def test_images_run_as_an_unprivileged_user_with_a_health_check() -> None:
    final_stages = {
        "inference": list(_stages(DOCKER / "inference.Dockerfile").values())[-1],
        "user-code": _stages(DOCKER / "dagster.Dockerfile")["user-code"],
        "dagster": _stages(DOCKER / "dagster.Dockerfile")["dagster"],
        "mlflow": list(_stages(DOCKER / "mlflow.Dockerfile").values())[-1],
    }
    for name, lines in final_stages.items():
        users = [line.split()[1] for line in lines if line.startswith("USER ")]
        assert users and users[-1].split(":")[0] not in {"0", "root"}, name
    inference = final_stages["inference"]
    assert any(line.startswith("HEALTHCHECK") and "/health" in line for line in inference)
    cmd = next(line for line in inference if line.startswith("CMD "))
    assert json.loads(cmd.removeprefix("CMD "))[:2] == ["uvicorn", "serving.app:app"]
    # uvicorn takes its worker count from WEB_CONCURRENCY; compose sets it per deployment
    assert any("WEB_CONCURRENCY=" in line for line in inference)


def test_images_sandbox_programs_with_the_seccomp_fallback(stack: dict) -> None:
    """No bubblewrap in the images and no weakened container profile: the sandbox's fallback
    needs neither, and the images ask for it by name so a missing bwrap is not a surprise."""
    for stage in ("inference", "user-code"):
        dockerfile = "inference.Dockerfile" if stage == "inference" else "dagster.Dockerfile"
        lines = _stages(DOCKER / dockerfile)
        final = lines[stage] if stage in lines else list(lines.values())[-1]
        assert any("FINMATH_SANDBOX_ISOLATION=seccomp" in line for line in final), stage
    for dockerfile in DOCKERFILES:
        assert "bubblewrap" not in re.sub(r"#.*", "", dockerfile.read_text()), dockerfile.name
    for name, service in stack["services"].items():
        assert not any("unconfined" in str(o) for o in service.get("security_opt", [])), name
        assert "SYS_ADMIN" not in service.get("cap_add", []), name


def test_images_install_cpu_torch_the_project_pins_and_bake_the_model() -> None:
    python = re.search(r'requires-python = ">=(\d+\.\d+)', (ROOT / "pyproject.toml").read_text())
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        base = re.search(r"ARG PYTHON_IMAGE=python:(\d+\.\d+)\.\d+-slim", text)
        assert base and base.group(1) == python.group(1), dockerfile.name
        installs = [
            line for line in re.sub(r"\\\n", " ", text).splitlines() if "pip install" in line
        ]
        assert installs and all("--constraint" in line for line in installs), dockerfile.name
    for name in ("inference.Dockerfile", "dagster.Dockerfile"):
        text = (DOCKER / name).read_text()
        assert "PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu" in text, name
        # the checked ONNX export is built into the image, next to the packaged MiniLM weights
        assert (
            "Settings().embedder().encode" in text
            and "FINMATH_MODEL_CACHE_DIR=/opt/finmath/models" in text
        )
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text().splitlines()


def test_every_file_the_images_copy_is_in_the_build_context() -> None:
    ignored = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()]
    ignored = [p for p in ignored if p and not p.startswith("#")]
    for dockerfile in DOCKERFILES:
        for line in dockerfile.read_text().splitlines():
            if line.startswith("COPY ") and "--from=" not in line:
                *sources, _destination = line.split()[1:]
                for source in sources:
                    assert (ROOT / source).exists(), f"{dockerfile.name}: {source}"
                    top = source.split("/")[0]
                    assert top not in ignored and source not in ignored, (
                        f"{dockerfile.name}: {source}"
                    )


# --- scale-out and CI -------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
        duplicated = {k for k in keys if keys.count(k) > 1}
        assert not duplicated, f"duplicate keys {duplicated} at line {node.start_mark.line + 1}"
        return super().construct_mapping(node, deep=deep)


def test_helm_values_use_the_stack_images_and_an_external_postgres(stack: dict) -> None:
    values = yaml.load(
        (DOCKER / "scale-out" / "helm" / "values.yaml").read_text(), _UniqueKeyLoader
    )
    images = {s["image"].split(":")[0] for s in stack["services"].values()}
    assert values["dagsterWebserver"]["image"]["repository"] in images
    assert values["dagsterDaemon"]["image"]["repository"] in images
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["image"]["repository"] in images
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "finmath_assets.definitions"]
    assert values["postgresql"]["enabled"] is False
    assert values["runLauncher"]["type"] == "K8sRunLauncher"


def test_ci_workflow_lints_then_runs_the_one_test_command_of_ci_run() -> None:
    """The workflow adds `make lint` in front; `.ci/run` is the README's test command alone."""
    workflow = yaml.load((ROOT / ".github" / "workflows" / "ci.yml").read_text(), _UniqueKeyLoader)
    steps = workflow["jobs"]["test"]["steps"]
    runs = [step.get("run", "") for step in steps]
    assert "make lint" in runs and "make test" in runs
    # OS packages come from the one documented step, never from an ad-hoc apt-get
    assert "make system-deps" in runs and not any("apt-get" in run for run in runs)
    setup = next(s for s in steps if s.get("uses", "").startswith("actions/setup-python"))
    assert setup["with"]["cache"] == "pip" and setup["with"]["python-version"] == "3.11"
    assert "download.pytorch.org/whl/cpu" in workflow["jobs"]["test"]["env"]["PIP_EXTRA_INDEX_URL"]
    ci_run = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line and not line.startswith(("#", "set ", "cd "))
    ]
    assert ci_run == ["make test"]


def _recipe(target: str) -> list[str]:
    """The command lines of one Makefile target."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return recipe


def test_pre_commit_hooks_run_the_linters_of_make_lint() -> None:
    config = ROOT / ".pre-commit-config.yaml"
    validate = subprocess.run(
        [sys.executable, "-m", "pre_commit", "validate-config", str(config)],
        capture_output=True,
        text=True,
    )
    assert validate.returncode == 0, validate.stdout + validate.stderr
    hooks = {
        h["id"]: h for repo in yaml.safe_load(config.read_text())["repos"] for h in repo["hooks"]
    }
    assert set(hooks) == {"ruff-check", "ruff-format", "mypy"}
    lint = " ".join(_recipe("lint"))
    for hook in hooks.values():
        assert hook["language"] == "system"  # the venv's pinned tools, nothing fetched
        tool = hook["entry"].split()[0].removeprefix(".venv/bin/")
        assert f"$(BIN)/{tool}" in lint, f"{hook['id']} runs {tool}, which make lint does not"
    # mypy takes its files from pyproject.toml in both places
    assert hooks["mypy"]["pass_filenames"] is False and "$(BIN)/mypy" in _recipe("lint")
