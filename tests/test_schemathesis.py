"""Property-based API testing: schemathesis fuzzes the live app from its own /openapi.json
and must find no 5xx and no response that breaks the schema. Kept short for CI."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.stack import base_env

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"

# positive_data_acceptance is left out on purpose: schema-valid base64 is rarely a
# decodable image, and the API must refuse those (422), which that check calls a failure.
EXCLUDED_CHECKS = "positive_data_acceptance"
# Invalid requests may also be refused as too large (413: more images than allowed; 414:
# a generated query string longer than the HTTP server takes), not only 4xx-invalid.
CONFIG = """
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "404", "405", "409", "413", "414", "415", "422", "429"]
"""


def test_schemathesis_finds_no_server_errors_or_schema_violations(web_app, redis_client, tmp_path):
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    # One worker: with two, hypothesis described filter lambdas with ast.parse in two threads
    # at once, and CPython 3.11.7 once raised "SystemError: AST constructor recursion depth
    # mismatch" inside schemathesis (a clean-clone run; the rerun passed): not the API's fault.
    cmd = [str(SCHEMATHESIS), "--config-file", str(config), "run", f"{web_app}/openapi.json", "--checks", "all",
           "--exclude-checks", EXCLUDED_CHECKS, "--max-examples", "15", "--seed", "1",
           "--phases", "examples,coverage,fuzzing", "--request-timeout", "30", "--workers", "1",
           "--generation-deterministic", "--report", "junit", "--report-dir", str(tmp_path)]
    run = subprocess.run(cmd, env=base_env(), capture_output=True, text=True, timeout=900)
    # Generated URLs can be kilobytes long: cut each line so the report stays readable.
    report = "\n".join(line[:300] for line in (run.stdout + run.stderr).splitlines())
    assert run.returncode == 0, report[-12000:]
