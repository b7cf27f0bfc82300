"""The manifests under test: every YAML document of deploy/ and examples/k8s/, read as kubectl reads them."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
EXAMPLES = ROOT / "examples" / "k8s"
NAMESPACE = "tenet-system"
# The newest Kubernetes release kubernetes-validate ships schemas for (setup.cfg pins at least that package).
KUBERNETES_VERSION = "1.37"
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")  # what `kubectl apply -f DIR` picks up; it ignores the rest

Obj = dict[str, Any]


def manifest_files(directory: Path = DEPLOY) -> list[Path]:
    """The files `kubectl apply -f DIR` applies, in the order it applies them (by name)."""
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in MANIFEST_SUFFIXES)


def documents(path: Path) -> list[Obj]:
    """The non-empty documents of a multi-document YAML file (a copy of its own for each caller)."""
    return copy.deepcopy(_parse(path.read_text()))


@functools.lru_cache(maxsize=64)
def _parse(text: str) -> list[Obj]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [doc for doc in yaml.load_all(text, Loader=loader) if doc is not None]


def objects(directory: Path = DEPLOY) -> list[Obj]:
    return [doc for path in manifest_files(directory) for doc in documents(path)]


def one(kind: str, name: str, directory: Path = DEPLOY) -> Obj:
    """The object of this kind and name; fails the test when there is not exactly one."""
    found = [o for o in objects(directory) if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"want one {kind} {name}, found {len(found)}"
    return found[0]


def pod_spec(kind: str, name: str) -> Obj:
    return one(kind, name)["spec"]["template"]["spec"]
