"""What the sandbox serves: one `ResourceType` per kind, built-in or from a CRD."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]


@dataclass
class Version:
    """One served version of a resource, with what the CRD says about it."""

    name: str
    schema: Json | None = None  # openAPIV3Schema; None for built-ins (no validation)
    printer_columns: list[Json] = field(default_factory=list)
    status_subresource: bool = False
    storage: bool = False


@dataclass
class ResourceType:
    """A kind the sandbox serves; objects are stored once per (group, plural), whatever the version."""

    group: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    versions: list[Version]
    short_names: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    builtin: bool = True
    # built-ins whose metadata.generation kube-apiserver maintains (most core kinds leave it unset)
    tracks_generation: bool = False

    @property
    def key(self) -> tuple[str, str]:
        """The storage identity: (group, plural)."""
        return (self.group, self.plural)

    @property
    def list_kind(self) -> str:
        """`FeatureRolloutList`."""
        return f"{self.kind}List"

    @property
    def qualified(self) -> str:
        """`featurerollouts.featurerollout.io` or `configmaps`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def version(self, name: str) -> Version | None:
        """The served version called `name`, if any."""
        return next((v for v in self.versions if v.name == name), None)

    @property
    def storage_version(self) -> str:
        """The version objects are stored in (no conversion: only apiVersion is rewritten)."""
        return next((v.name for v in self.versions if v.storage), self.versions[0].name)

    def api_version(self, version: str) -> str:
        """`featurerollout.io/v1alpha1` or `v1`."""
        return f"{self.group}/{version}" if self.group else version

    def has_status(self, version: str) -> bool:
        """Whether `version` has the status subresource."""
        v = self.version(version)
        return bool(v and v.status_subresource)


def _builtin(
    group: str,
    version: str,
    kind: str,
    plural: str,
    namespaced: bool,
    short_names: list[str] | None = None,
    status: bool = False,
    tracks_generation: bool = False,
) -> ResourceType:
    return ResourceType(
        group=group,
        kind=kind,
        plural=plural,
        singular=kind.lower(),
        namespaced=namespaced,
        versions=[Version(version, status_subresource=status, storage=True)],
        short_names=short_names or [],
        builtin=True,
        tracks_generation=tracks_generation,
    )


def builtin_resources() -> list[ResourceType]:
    """The built-in kinds this project touches. Events of both API groups are stored separately."""
    return [
        _builtin("", "v1", "Namespace", "namespaces", False, ["ns"], status=True),
        _builtin("", "v1", "ConfigMap", "configmaps", True, ["cm"]),
        _builtin("", "v1", "Secret", "secrets", True),
        _builtin("", "v1", "Event", "events", True, ["ev"]),
        _builtin("events.k8s.io", "v1", "Event", "events", True, ["ev"]),
        _builtin("coordination.k8s.io", "v1", "Lease", "leases", True),
        _builtin(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            False,
            ["crd", "crds"],
            status=True,
            tracks_generation=True,
        ),
    ]


def from_crd(crd: Json) -> ResourceType:
    """The `ResourceType` an apiextensions.k8s.io/v1 CustomResourceDefinition declares."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    versions: list[Version] = []
    for v in spec.get("versions") or []:
        if not v.get("served", True):
            continue
        versions.append(
            Version(
                name=v["name"],
                schema=(v.get("schema") or {}).get("openAPIV3Schema"),
                printer_columns=list(v.get("additionalPrinterColumns") or []),
                status_subresource="status" in (v.get("subresources") or {}),
                storage=bool(v.get("storage")),
            )
        )
    kind = names["kind"]
    return ResourceType(
        group=spec["group"],
        kind=kind,
        plural=names["plural"],
        singular=names.get("singular") or kind.lower(),
        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
        versions=versions,
        short_names=list(names.get("shortNames") or []),
        categories=list(names.get("categories") or []),
        builtin=False,
        tracks_generation=True,
    )


def _protected_group(group: str) -> bool:
    return group in ("k8s.io", "kubernetes.io") or group.endswith((".k8s.io", ".kubernetes.io"))


def check_crd(crd: Json) -> list[dict[str, str]]:
    """The few structural checks kube-apiserver makes on a CRD that the sandbox needs to serve it."""
    causes: list[dict[str, str]] = []

    def need(path: str, ok: bool) -> None:
        if not ok:
            causes.append({"reason": "FieldValueRequired", "message": "Required value", "field": path})

    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    need("spec.group", bool(spec.get("group")))
    need("spec.names.plural", bool(names.get("plural")))
    need("spec.names.kind", bool(names.get("kind")))
    versions = spec.get("versions") or []
    need("spec.versions", bool(versions))
    for i, v in enumerate(versions):
        need(f"spec.versions[{i}].name", bool(v.get("name")))
    if versions and sum(1 for v in versions if v.get("storage")) != 1:
        causes.append(
            {
                "reason": "FieldValueInvalid",
                "message": "Invalid value: \"array\": must have exactly one version marked as storage version",
                "field": "spec.versions",
            }
        )
    group = str(spec.get("group") or "")
    annotations = (crd.get("metadata") or {}).get("annotations") or {}
    # kube-apiserver's rule (KEP 1111): CRDs in the community's own API groups need an approval link.
    if _protected_group(group) and not annotations.get("api-approved.kubernetes.io"):
        causes.append(
            {
                "reason": "FieldValueRequired",
                "message": "Required value: protected groups must have approval annotation "
                           '"api-approved.kubernetes.io", see https://github.com/kubernetes/enhancements/pull/1111',
                "field": "metadata.annotations[api-approved.kubernetes.io]",
            }
        )
    name = (crd.get("metadata") or {}).get("name")
    if spec.get("group") and names.get("plural") and name != f"{names['plural']}.{spec['group']}":
        causes.append(
            {
                "reason": "FieldValueInvalid",
                "message": f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group',
                "field": "metadata.name",
            }
        )
    return causes
