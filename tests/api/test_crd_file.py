"""The committed CRD: up to date, a valid apiextensions.k8s.io/v1 object, and structural."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from featurerollout import api
from featurerollout.api.crd import render_crd_yaml
from featurerollout.commands.cli import main
from tests.api.crd_helpers import cel_errors, crd, root_schema
from tests.support.paths import REPO

ROOT = REPO
CRD_FILE = ROOT / "crds" / "featurerollouts.yaml"
K8S_VERSION = kubernetes_validate.latest_version()


def test_committed_crd_is_up_to_date() -> None:
    committed = CRD_FILE.read_text(encoding="utf-8") if CRD_FILE.exists() else "(missing)"
    assert committed == render_crd_yaml(), (
        f"{CRD_FILE.relative_to(ROOT)} differs from what the API models (api/) render: run `make crd` and commit it"
    )


def test_committed_crd_says_it_is_generated() -> None:
    head = CRD_FILE.read_text(encoding="utf-8").splitlines()[:2]
    assert all(line.startswith("#") for line in head)
    assert "featurerollout crd" in head[0] and "make crd" in "\n".join(head)


def test_crd_is_a_valid_apiextensions_v1_object() -> None:
    document = yaml.safe_load(CRD_FILE.read_text(encoding="utf-8"))
    kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def test_the_strict_validation_is_not_a_no_op() -> None:
    document = crd()
    document["spec"]["versions"][0]["additionalPrinterColumns"][0]["jsonPth"] = ".spec.flag"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def test_kubernetes_validate_cli_accepts_the_file() -> None:
    cli = Path(sys.executable).with_name("kubernetes-validate")
    result = subprocess.run(
        [str(cli), "--strict", str(CRD_FILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_identity_matches_api_md() -> None:
    spec = crd()["spec"]
    assert crd()["metadata"]["name"] == "featurerollouts.featurerollout.io"
    assert spec["group"] == "featurerollout.io"
    assert spec["scope"] == "Namespaced"
    names = spec["names"]
    assert (names["kind"], names["plural"], names["singular"]) == (
        "FeatureRollout",
        "featurerollouts",
        "featurerollout",
    )
    assert names["shortNames"] == ["fro"]
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


def test_printer_columns() -> None:
    columns = crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [(c["name"], c["jsonPath"], c["type"], c.get("priority", 0)) for c in columns] == [
        ("Flag", ".spec.flag", "string", 0),
        ("Phase", ".status.phase", "string", 0),
        ("Weight", ".status.currentWeight", "number", 0),
        ("Stage", ".status.stage", "string", 0),
        ("Age", ".metadata.creationTimestamp", "date", 0),
        ("Message", ".status.message", "string", 1),
    ]
    status = root_schema()["properties"]["status"]["properties"]
    for column in columns:
        section, field = column["jsonPath"].lstrip(".").split(".")
        if section == "status":
            assert field in status, f"{column['name']} reads a status field the schema does not have"


# --- structural --------------------------------------------------------------------------------


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path."""
    yield path or "<root>", node
    for name, sub in node.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}[*]")


NODES = list(walk(root_schema()))


@pytest.mark.parametrize(("path", "node"), NODES, ids=[p for p, _ in NODES])
def test_schema_is_structural(path: str, node: dict[str, Any]) -> None:
    free_form = node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string")
    assert "type" in node or free_form, f"{path} has no type"
    for banned in ("$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "title", "nullable", "const"):
        assert banned not in node, f"{path} has {banned}"
    assert node.get("additionalProperties") is not False, f"{path}: additionalProperties: false"
    assert not ("properties" in node and "additionalProperties" in node), f"{path}: both kinds of properties"
    assert "default" not in node or node["default"] is not None, f"{path}: default: null"
    if node.get("type") == "array":
        assert "items" in node, f"{path}: an array without items"
    if isinstance(node.get("exclusiveMinimum"), bool):
        assert "minimum" in node


@pytest.mark.parametrize(("path", "node"), [(p, n) for p, n in NODES if "default" in n])
def test_defaults_are_valid_against_their_own_schema(path: str, node: dict[str, Any]) -> None:
    """kube-apiserver refuses a CRD whose defaults its own schema would refuse."""
    jsonschema.Draft4Validator(node).validate(node["default"])
    assert cel_errors(copy.deepcopy(node["default"]), node, path) == []


def test_every_walked_list_and_string_is_bounded() -> None:
    """CEL cost: every list a rule walks has maxItems, every string it compares has maxLength."""
    spec = root_schema()["properties"]["spec"]["properties"]
    assert spec["stages"]["maxItems"] == api.MAX_STAGES
    metrics = spec["analysis"]["properties"]["metrics"]
    assert metrics["maxItems"] == api.MAX_METRICS
    assert metrics["items"]["properties"]["name"]["maxLength"] == 63
    for path, node in NODES:
        if node.get("type") == "array" and path.startswith(".spec"):
            assert "maxItems" in node, path


def test_datetimes_are_strings_with_a_format() -> None:
    status = root_schema()["properties"]["status"]["properties"]
    assert status["stageStartedAt"] == {
        "description": "When the target began to hold the current stage's weight.",
        "type": "string",
        "format": "date-time",
    }


def test_headers_are_a_string_map() -> None:
    prometheus = root_schema()["properties"]["spec"]["properties"]["analysis"]["properties"]["prometheus"]
    headers = prometheus["properties"]["headers"]
    assert headers["type"] == "object"
    assert headers["additionalProperties"] == {"type": "string"}
    assert headers["maxProperties"] == api.MAX_HEADERS


# --- the subcommand ----------------------------------------------------------------------------


def test_crd_subcommand_prints_the_crd(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crd"]) == 0
    assert capsys.readouterr().out == render_crd_yaml()


def test_crd_subcommand_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crd", "--check", str(CRD_FILE)]) == 0
    stale = tmp_path / "stale.yaml"
    stale.write_text(render_crd_yaml().replace("fro", "fr"), encoding="utf-8")
    assert main(["crd", "--check", str(stale)]) == 1
    assert "make crd" in capsys.readouterr().err


def test_crd_subcommand_output(tmp_path: Path) -> None:
    out = tmp_path / "crd.yaml"
    assert main(["crd", "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == render_crd_yaml()


@pytest.mark.parametrize(("path", "node"), [(p, n) for p, n in NODES if "x-kubernetes-validations" in n])
def test_rules_keep_their_message_and_point_at_real_fields(path: str, node: dict[str, Any]) -> None:
    for rule in node["x-kubernetes-validations"]:
        assert rule["message"], f"{path}: a rule without a message"
        # kube-apiserver words FieldValueDuplicate as `Duplicate value: "array"` and drops the message.
        assert rule.get("reason", "FieldValueInvalid") != "FieldValueDuplicate"
        field_path = rule.get("fieldPath")
        if field_path is not None:
            assert field_path.startswith(".") and "[" not in field_path, field_path
            target = node
            for name in field_path.lstrip(".").split("."):
                assert name in target.get("properties", {}), f"{path}: fieldPath {field_path} names no field"
                target = target["properties"][name]
