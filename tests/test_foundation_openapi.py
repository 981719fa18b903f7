"""docs/openapi.yaml against the running stack: schemathesis exercises every documented
operation through nginx and fails on any 5xx or any response the document does not allow."""

import sys
import xml.etree.ElementTree as ElementTree

import pytest
import yaml

from harness.paths import REPO
from harness.processes import run

SPEC = REPO / "docs" / "openapi.yaml"
CONFIG = REPO / "tests" / "schemathesis.toml"


def documented_operations():
    paths = yaml.safe_load(SPEC.read_text())["paths"]
    methods = {"get", "put", "post", "delete", "patch", "head", "options"}
    return [(method.upper(), path) for path, item in paths.items() for method in item if method in methods]


@pytest.mark.timeout(900)
def test_documented_operations_conform_to_the_document(stack, tmp_path):
    junit = tmp_path / "schemathesis.xml"
    result = run([sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run", str(SPEC),
                  "--url", stack.url(""), "--tls-verify", "false",
                  "--max-examples", "50", "--seed", "20261122", "--workers", "1",
                  "--report", "junit", "--report-junit-path", str(junit)], timeout=840, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]

    cases = ElementTree.parse(junit).getroot().iter("testcase")
    tested = {case.get("name") for case in cases}
    for method, path in documented_operations():
        assert f"{method} {path}" in tested, (method, path, tested)
