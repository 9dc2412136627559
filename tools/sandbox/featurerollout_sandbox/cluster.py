"""The API semantics over the store: metadata, generation, status subresource, validation,
finalizers, namespaces, and CRDs that add resources at runtime.

Handlers in server.py parse HTTP; this module decides what a request does to the objects.
"""

from __future__ import annotations

import base64
import copy
import re
import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import yaml

from featurerollout_sandbox import cel, patch, schema
from featurerollout_sandbox.errors import (
    ApiError,
    already_exists,
    conflict,
    invalid,
    not_found,
)
from featurerollout_sandbox.resources import ResourceType, builtin_resources, check_crd, from_crd
from featurerollout_sandbox.store import DEFAULT_HISTORY_LIMIT, Store

Json = dict[str, Any]

CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")
NAMESPACE_KEY = ("", "namespaces")
SECRET_KEY = ("", "secrets")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# metadata fields the server owns: a client's values are ignored (or kept from the stored object)
_SERVER_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation")


def now_rfc3339() -> str:
    """The current time as Kubernetes writes timestamps (second precision, Z)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Cluster:
    """All resources, their objects, and the operations the REST API offers on them."""

    def __init__(self, history_limit: int = DEFAULT_HISTORY_LIMIT) -> None:
        self.store = Store(history_limit)
        # per request, set by the server before a write: the fieldValidation directive and its warnings
        self.field_validation = "Ignore"
        self.warnings: list[str] = []
        self.resources: dict[tuple[str, str], ResourceType] = {}
        for rt in builtin_resources():
            self.resources[rt.key] = rt
        for ns in ("default", "kube-system", "kube-public"):
            self.create(self.resources[NAMESPACE_KEY], "v1", None, {"metadata": {"name": ns}})

    # ------------------------------------------------------------------------------ resources

    def resolve(self, group: str, version: str, plural: str) -> ResourceType:
        """The resource served at /apis/<group>/<version>/<plural>; 404 when there is none."""
        rt = self.resources.get((group, plural))
        if rt is None or rt.version(version) is None:
            raise ApiError(404, "the server could not find the requested resource", "NotFound", {})
        return rt

    def groups(self) -> dict[str, list[ResourceType]]:
        """Resources by API group ("" is the core group)."""
        result: dict[str, list[ResourceType]] = {}
        for rt in self.resources.values():
            result.setdefault(rt.group, []).append(rt)
        return result

    def load_crd(self, crd: Json) -> Json:
        """Create (or replace) a CRD from a manifest, as `kubectl apply -f crds/` would."""
        rt = self.resources[CRD_KEY]
        name = (crd.get("metadata") or {}).get("name", "")
        existing = self.store.get(CRD_KEY, "", name)
        if existing is None:
            return self.create(rt, "v1", None, crd)
        body = copy.deepcopy(crd)
        body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        return self.replace(rt, "v1", None, name, body)

    def _register_crd(self, crd: Json) -> None:
        rt = from_crd(crd)
        previous = self.resources.get(rt.key)
        if previous is not None and previous.builtin:
            raise ApiError(409, f"{rt.qualified} conflicts with a built-in resource")
        self.resources[rt.key] = rt

    def _check_crd(self, crd: Json) -> None:
        causes = check_crd(crd)
        for i, version in enumerate((crd.get("spec") or {}).get("versions") or []):
            openapi = (version.get("schema") or {}).get("openAPIV3Schema")
            causes += cel.compile_errors(openapi, f"spec.versions[{i}].schema.openAPIV3Schema")
        if causes:
            name = (crd.get("metadata") or {}).get("name", "")
            raise invalid("CustomResourceDefinition", "apiextensions.k8s.io", name, causes)

    @staticmethod
    def _crd_status(crd: Json) -> Json:
        names = dict((crd.get("spec") or {}).get("names") or {})
        names.setdefault("singular", str(names.get("kind", "")).lower())
        names.setdefault("listKind", f"{names.get('kind', '')}List")
        now = now_rfc3339()
        return {
            "acceptedNames": names,
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found", "lastTransitionTime": now},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted", "lastTransitionTime": now},
            ],
            "storedVersions": [v["name"] for v in crd["spec"]["versions"] if v.get("storage")],
        }

    # ------------------------------------------------------------------------------- reading

    def serve(self, rt: ResourceType, version: str, obj: Json) -> Json:
        """A copy of a stored object as the given version presents it (no conversion beyond apiVersion)."""
        served = copy.deepcopy(obj)
        served["apiVersion"] = rt.api_version(version)
        served["kind"] = rt.kind
        return served

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> Json:
        """The stored object; 404 NotFound when absent."""
        obj = self.store.get(rt.key, namespace or "", name)
        if obj is None:
            raise not_found(rt.group, rt.plural, name)
        return obj

    def list(
        self, rt: ResourceType, namespace: str | None, predicate: Callable[[Json], bool] = lambda o: True
    ) -> list[Json]:
        """Stored objects of one namespace (or all) that match the selectors."""
        return [o for o in self.store.objects(rt.key, namespace) if predicate(o)]

    # ------------------------------------------------------------------------------- writing

    def _admit(self, rt: ResourceType, version: str, obj: Json, old: Json | None) -> Json:
        """Prune, default and validate a custom resource against its version's schema (and CEL).

        Unknown fields are pruned; under `fieldValidation=Strict` they are refused (400), under
        `Warn` they are reported in `self.warnings` (the server sends them as Warning headers).
        """
        if rt.key == CRD_KEY:
            self._check_crd(obj)
            return obj
        if rt.key == SECRET_KEY:
            return _merge_string_data(obj)
        v = rt.version(version)
        if v is None or v.schema is None:
            return obj
        pruned: list[str] = []
        obj = schema.prune(obj, v.schema, root=True, pruned=pruned)
        if pruned and self.field_validation == "Strict":
            unknown = ", ".join(f'unknown field "{p}"' for p in pruned)
            raise ApiError(
                400,
                f'{rt.kind} in version "{version}" cannot be handled as a {rt.kind}: strict decoding error: {unknown}',
            )
        if pruned and self.field_validation == "Warn":
            self.warnings += [f'unknown field "{p}"' for p in pruned]
        obj = schema.apply_defaults(obj, v.schema)
        causes = schema.validate(
            obj, v.schema, "", old if old is not None else schema.MISSING, rules=cel.check_rules, root=True
        )
        if causes:
            raise invalid(rt.kind, rt.group, obj["metadata"].get("name", ""), causes)
        return obj

    def _check_namespace(self, rt: ResourceType, namespace: str | None, body: Json) -> str:
        meta = body.setdefault("metadata", {})
        if not rt.namespaced:
            meta.pop("namespace", None)
            return ""
        if not namespace:
            raise ApiError(400, "the namespace of the object must be given in the request path")
        if meta.get("namespace") and meta["namespace"] != namespace:
            raise ApiError(
                400, "the namespace of the provided object does not match the namespace sent on the request"
            )
        meta["namespace"] = namespace
        if self.store.get(NAMESPACE_KEY, "", namespace) is None:
            raise not_found("", "namespaces", namespace)
        return namespace

    def _check_name(self, rt: ResourceType, body: Json) -> str:
        meta = body["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(
                secrets.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5)
            )
        name = meta.get("name") or ""
        if not name:
            raise invalid(rt.kind, rt.group, "", [
                {"reason": "FieldValueRequired", "message": "Required value: name or generateName is required",
                 "field": "metadata.name"}
            ])
        pattern, what = (_LABEL, "label") if rt.key == NAMESPACE_KEY else (_SUBDOMAIN, "subdomain")
        limit = 63 if what == "label" else 253
        if not pattern.match(name) or len(name) > limit:
            raise invalid(rt.kind, rt.group, name, [
                {"reason": "FieldValueInvalid", "field": "metadata.name",
                 "message": f'Invalid value: "{name}": a lowercase RFC 1123 {what} must consist of lower case '
                            "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
                            "character"}
            ])
        return name

    def _check_type(self, rt: ResourceType, version: str, body: Json) -> None:
        if not isinstance(body, dict):
            raise ApiError(400, "the body of the request must be a JSON object")
        if body.get("kind") and body["kind"] != rt.kind:
            raise ApiError(400, f"the kind in the data ({body['kind']}) does not match the expected kind ({rt.kind})")
        expected = rt.api_version(version)
        if body.get("apiVersion") and body["apiVersion"] != expected:
            raise ApiError(
                400,
                f"the API version in the data ({body['apiVersion']}) does not match the expected API version "
                f"({expected})",
            )
        body["apiVersion"] = rt.api_version(rt.storage_version)
        body["kind"] = rt.kind
        if not isinstance(body.get("metadata", {}), dict):
            raise ApiError(400, "metadata must be an object")

    def create(
        self, rt: ResourceType, version: str, namespace: str | None, body: Json, dry_run: bool = False
    ) -> Json:
        """POST: a new object; 409 AlreadyExists, 404 for a missing namespace, 422 Invalid."""
        body = copy.deepcopy(body)
        self._check_type(rt, version, body)
        body.setdefault("metadata", {})
        ns = self._check_namespace(rt, namespace, body)
        name = self._check_name(rt, body)
        if self.store.get(rt.key, ns, name) is not None:
            raise already_exists(rt.group, rt.plural, name)
        meta = body["metadata"]
        for key in (*_SERVER_META, "resourceVersion", "managedFields"):
            meta.pop(key, None)
        if rt.has_status(version) and rt.key != NAMESPACE_KEY:
            body.pop("status", None)  # the status subresource owns status: create resets it
        body = self._admit(rt, version, body, None)
        meta = body["metadata"]
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        if rt.tracks_generation:
            meta["generation"] = 1
        if rt.key == NAMESPACE_KEY:
            body["spec"] = {"finalizers": ["kubernetes"]}
            body["status"] = {"phase": "Active"}
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = name
        if rt.key == CRD_KEY:
            body["status"] = self._crd_status(body)
        if dry_run:
            meta["resourceVersion"] = str(self.store.rv)
            return body
        if rt.key == CRD_KEY:
            self._register_crd(body)
        return self.store.write(rt.key, body, "ADDED")

    def replace(
        self,
        rt: ResourceType,
        version: str,
        namespace: str | None,
        name: str,
        body: Json,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Json:
        """PUT: 404 when absent, 409 Conflict on a stale resourceVersion; /status writes only status."""
        body = copy.deepcopy(body)
        self._check_type(rt, version, body)
        meta = body.setdefault("metadata", {})
        if meta.get("name") and meta["name"] != name:
            raise ApiError(400, f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")
        meta["name"] = name
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise ApiError(
                    400, "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
        old = self.get(rt, namespace, name)
        if not meta.get("resourceVersion") and not rt.builtin:
            # custom resources allow no unconditional update (kube-apiserver's CR strategy)
            raise invalid(rt.kind, rt.group, name, [
                {"reason": "FieldValueInvalid", "field": "metadata.resourceVersion",
                 "message": "Invalid value: 0x0: must be specified for an update"}
            ])
        if meta.get("resourceVersion") and meta["resourceVersion"] != old["metadata"]["resourceVersion"]:
            raise conflict(rt.group, rt.plural, name)
        return self._update(rt, version, old, body, subresource, dry_run)

    def patch(
        self,
        rt: ResourceType,
        version: str,
        namespace: str | None,
        name: str,
        content_type: str,
        body: Any,
        subresource: str | None = None,
        dry_run: bool = False,
        field_manager: str | None = None,
    ) -> Json:
        """PATCH: merge, JSON, strategic (built-ins only) and server-side apply (simplified)."""
        if content_type == patch.APPLY:
            return self._apply(rt, version, namespace, name, body, subresource, dry_run, field_manager)
        old = self.get(rt, namespace, name)
        current = self.serve(rt, version, old)
        if content_type == patch.MERGE:
            patched = patch.merge_patch(current, body)
        elif content_type == patch.JSON_PATCH:
            patched = patch.json_patch(current, body)
        elif content_type == patch.STRATEGIC and rt.builtin:
            patched = patch.strategic_merge_patch(current, body)
        else:
            accepted = patch.CR_PATCH_TYPES if not rt.builtin else (*patch.CR_PATCH_TYPES, patch.STRATEGIC)
            raise ApiError(
                415,
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{', '.join(accepted)}",
            )
        if not isinstance(patched, dict):
            raise ApiError(422, "the patched object must be a JSON object")
        meta = patched.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise ApiError(422, "metadata must be an object")
        if meta.get("resourceVersion") and meta["resourceVersion"] != old["metadata"]["resourceVersion"]:
            raise conflict(rt.group, rt.plural, name)  # a patch that sets resourceVersion is a precondition
        if meta.get("name", name) != name or (rt.namespaced and meta.get("namespace", namespace) != namespace):
            raise ApiError(400, "a patch may not change the name or namespace of an object")
        meta["name"] = name
        patched["apiVersion"] = rt.api_version(rt.storage_version)
        return self._update(rt, version, old, patched, subresource, dry_run)

    def _apply(
        self,
        rt: ResourceType,
        version: str,
        namespace: str | None,
        name: str,
        body: Any,
        subresource: str | None,
        dry_run: bool,
        field_manager: str | None,
    ) -> Json:
        """Server-side apply, simplified: create when absent, else a merge patch of the applied config.

        No managedFields, no conflicts between managers, and fields dropped from the applied
        configuration are not removed.
        """
        if not field_manager:
            raise ApiError(422, 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: '
                                "is required for apply patch")
        try:
            applied = yaml.safe_load(body) if isinstance(body, (str, bytes)) else body
        except yaml.YAMLError as exc:
            raise ApiError(400, f"error decoding YAML: {exc}") from exc
        if not isinstance(applied, dict):
            raise ApiError(400, "the applied configuration must be an object")
        applied.setdefault("metadata", {}).setdefault("name", name)
        if self.store.get(rt.key, namespace or "", name) is None:
            if subresource:
                raise not_found(rt.group, rt.plural, name)
            return self.create(rt, version, namespace, applied, dry_run)
        applied["metadata"].pop("resourceVersion", None)
        return self.patch(rt, version, namespace, name, patch.MERGE, applied, subresource, dry_run)

    def _update(
        self,
        rt: ResourceType,
        version: str,
        old: Json,
        new: Json,
        subresource: str | None,
        dry_run: bool,
    ) -> Json:
        if subresource == "status":
            merged = copy.deepcopy(old)
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            new = merged
        else:
            meta = new.setdefault("metadata", {})
            for key in (*_SERVER_META, "resourceVersion"):
                if key in old["metadata"]:
                    meta[key] = old["metadata"][key]
                else:
                    meta.pop(key, None)
            if rt.has_status(version) and rt.key != NAMESPACE_KEY:
                if "status" in old:
                    new["status"] = old["status"]
                else:
                    new.pop("status", None)
            if rt.key == CRD_KEY:
                new["status"] = self._crd_status(new)
            if rt.key == NAMESPACE_KEY:
                new["status"] = old.get("status", {"phase": "Active"})
                new["spec"] = old.get("spec", {})
        new = self._admit(rt, version, new, old)
        if rt.tracks_generation and _spec_of(new) != _spec_of(old):
            new["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
        if new == old:
            return old  # a no-op write: no new resourceVersion, no watch event (as kube-apiserver)
        if dry_run:
            return new
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            return self._finally_remove(rt, new)
        if rt.key == CRD_KEY:
            self._register_crd(new)
        return self.store.write(rt.key, new, "MODIFIED")

    def delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        options: Json | None = None,
        dry_run: bool = False,
    ) -> tuple[Json, bool]:
        """DELETE: honours finalizers (sets deletionTimestamp) and preconditions; (object, gone?)."""
        old = self.get(rt, namespace, name)
        preconditions = (options or {}).get("preconditions") or {}
        if preconditions.get("uid") and preconditions["uid"] != old["metadata"].get("uid"):
            raise conflict(rt.group, rt.plural, name)
        if preconditions.get("resourceVersion") and preconditions["resourceVersion"] != old["metadata"].get(
            "resourceVersion"
        ):
            raise conflict(rt.group, rt.plural, name)
        if dry_run:
            return old, not old["metadata"].get("finalizers")
        if old["metadata"].get("finalizers"):
            if old["metadata"].get("deletionTimestamp"):
                return old, False
            marked = copy.deepcopy(old)
            marked["metadata"]["deletionTimestamp"] = now_rfc3339()
            marked["metadata"]["deletionGracePeriodSeconds"] = 0
            if rt.tracks_generation:
                marked["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
            return self.store.write(rt.key, marked, "MODIFIED"), False
        return self._finally_remove(rt, old), True

    def _finally_remove(self, rt: ResourceType, obj: Json) -> Json:
        final = self.store.remove(rt.key, obj)
        if rt.key == NAMESPACE_KEY:
            self._empty_namespace(obj["metadata"]["name"])
        if rt.key == CRD_KEY:
            self._unregister_crd(obj)
        return final

    def _empty_namespace(self, namespace: str) -> None:
        for other in list(self.resources.values()):
            if other.namespaced:
                for obj in self.store.objects(other.key, namespace):
                    self.delete(other, namespace, obj["metadata"]["name"])

    def _unregister_crd(self, crd: Json) -> None:
        key = (crd["spec"]["group"], crd["spec"]["names"]["plural"])
        rt = self.resources.get(key)
        if rt is None or rt.builtin:
            return
        for obj in self.store.objects(key):
            self.store.remove(key, obj)
        self.store.drop_resource(key)
        del self.resources[key]


def _merge_string_data(secret: Json) -> Json:
    """A Secret as kube-apiserver stores it: `stringData` merged over `data` (base64 of its UTF-8;
    a key in both takes stringData's value), and stringData itself never stored. The real server
    does this when it decodes any write (create, update, patch, apply), so the sandbox does it
    before every write too; a reader never sees stringData."""
    string_data = secret.pop("stringData", None)
    if string_data is None:
        return secret
    name = (secret.get("metadata") or {}).get("name", "")
    if not isinstance(string_data, dict) or not all(isinstance(v, str) for v in string_data.values()):
        raise ApiError(400, f'Secret "{name}" cannot be handled as a Secret: stringData must map keys to strings')
    data = secret.get("data") or {}
    secret["data"] = {**data, **{k: base64.b64encode(v.encode()).decode() for k, v in string_data.items()}}
    return secret


def _spec_of(obj: Json) -> Json:
    """Everything that bumps metadata.generation: all but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}
