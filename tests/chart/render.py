"""The chart rendered by the real helm binary, as objects; shared by the chart tests."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.processes import REPO

_spec = importlib.util.spec_from_file_location("manifests", REPO / "scripts" / "manifests.py")
assert _spec is not None and _spec.loader is not None
manifests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(manifests)

CHART = manifests.CHART
HELM = Path(manifests.HELM)
Obj = dict[str, Any]


def require_helm() -> Path:
    if HELM.exists():
        return HELM
    message = f"{HELM} is missing: run `make tools`"
    if os.environ.get("SDA_REQUIRE_ALL") == "1":
        pytest.fail(message)
    pytest.skip(message)


def require_promtool() -> Path:
    """Prometheus' promtool (scripts/system-deps.sh installs it), or $PROMTOOL."""
    found = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if found:
        return Path(found)
    message = "promtool is missing: run `make system-deps`"
    if os.environ.get("SDA_REQUIRE_ALL") == "1":
        pytest.fail(message)
    pytest.skip(message)


def render(*sets: str, values: Obj | None = None, tmp: Path | None = None) -> list[Obj]:
    """Objects of the chart with `--set` pairs (and a values file) on top of the defaults."""
    require_helm()
    extra = [arg for pair in sets for arg in ("--set", pair)]
    if values is not None:
        assert tmp is not None
        file = tmp / "values.yaml"
        file.write_text(yaml.safe_dump(values))
        extra += ["-f", str(file)]
    return [doc for doc in yaml.safe_load_all(manifests.helm_template(*extra)) if doc]


def render_error(*sets: str, values: Obj | None = None, tmp: Path | None = None) -> str:
    """helm's message when the chart refuses the values."""
    try:
        render(*sets, values=values, tmp=tmp)
    except subprocess.CalledProcessError as exc:
        return str(exc.stderr)
    raise AssertionError(f"helm accepted {sets} {values or ''}")


def one(objects: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"{len(found)} {kind} objects named {name}"
    return found[0]


def pod_specs(objects: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    """(owner, pod spec) for every pod the chart makes, the Fleet's included."""
    for obj in objects:
        spec = obj.get("spec", {})
        if obj["kind"] == "Pod":
            yield obj, spec
        elif obj["kind"] in ("Deployment", "Job"):
            yield obj, spec["template"]["spec"]
        elif obj["kind"] == "CronJob":
            yield obj, spec["jobTemplate"]["spec"]["template"]["spec"]
        elif obj["kind"] == "Fleet":
            yield obj, spec["template"]["spec"]["template"]["spec"]


def containers(objects: list[Obj]) -> Iterator[tuple[Obj, Obj, Obj]]:
    for owner, pod in pod_specs(objects):
        for container in pod.get("initContainers", []) + pod["containers"]:
            yield owner, pod, container


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (path, value) in a nested object."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield f"{path}.{key}", value
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}[{index}]")
