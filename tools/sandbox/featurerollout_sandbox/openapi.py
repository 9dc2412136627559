"""/openapi/v3: enough for `kubectl apply` (it finds the fieldValidation parameter and lets the
server validate) and `kubectl explain` (it reads each kind's schema by x-kubernetes-group-version-kind).

Custom resources publish their CRD's openAPIV3Schema; built-ins publish a minimal schema
(apiVersion, kind, metadata and their top-level fields, without descriptions).
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from featurerollout_sandbox import patch
from featurerollout_sandbox.resources import ResourceType

Json = dict[str, Any]

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_BUILTIN_FIELDS: dict[str, Json] = {
    "ConfigMap": {
        "data": {"type": "object", "additionalProperties": {"type": "string"},
                 "description": "Data contains the configuration data."},
        "binaryData": {"type": "object", "additionalProperties": {"type": "string", "format": "byte"}},
        "immutable": {"type": "boolean"},
    },
    "Secret": {
        "data": {"type": "object", "additionalProperties": {"type": "string", "format": "byte"}},
        "stringData": {"type": "object", "additionalProperties": {"type": "string"}},
        "type": {"type": "string"},
        "immutable": {"type": "boolean"},
    },
}


def _object_meta_schema() -> Json:
    string_map = {"type": "object", "additionalProperties": {"type": "string"}}
    return {
        "type": "object",
        "description": "ObjectMeta is metadata that all persisted resources must have.",
        "properties": {
            "name": {"type": "string", "description": "Name must be unique within a namespace."},
            "generateName": {"type": "string"},
            "namespace": {"type": "string", "description": "Namespace defines the space within which each name "
                          "must be unique."},
            "labels": {**string_map, "description": "Map of string keys and values that can be used to organize "
                       "and categorize (scope and select) objects."},
            "annotations": {**string_map, "description": "Annotations is an unstructured key value map."},
            "finalizers": {"type": "array", "items": {"type": "string"}},
            "ownerReferences": {"type": "array", "items": {"type": "object",
                                                           "x-kubernetes-preserve-unknown-fields": True}},
            "uid": {"type": "string"},
            "resourceVersion": {"type": "string"},
            "generation": {"type": "integer", "format": "int64"},
            "creationTimestamp": {"type": "string", "format": "date-time"},
            "deletionTimestamp": {"type": "string", "format": "date-time"},
            "deletionGracePeriodSeconds": {"type": "integer", "format": "int64"},
        },
    }


def schema_name(rt: ResourceType, version: str) -> str:
    """`io.featurerollout.v1alpha1.FeatureRollout`, `io.k8s.api.core.v1.ConfigMap`."""
    if rt.builtin:
        group = rt.group.split(".")[0] if rt.group else "core"
        return f"io.k8s.api.{group}.{version}.{rt.kind}"
    return ".".join(reversed(rt.group.split("."))) + f".{version}.{rt.kind}"


def _kind_schema(rt: ResourceType, version: str) -> Json:
    v = rt.version(version)
    base: Json = copy.deepcopy(v.schema) if v and v.schema else {"type": "object"}
    props = base.setdefault("properties", {})
    props["apiVersion"] = {"type": "string", "description": "APIVersion defines the versioned schema of this "
                           "representation of an object."}
    props["kind"] = {"type": "string", "description": "Kind is a string value representing the REST resource "
                     "this object represents."}
    props["metadata"] = {"allOf": [{"$ref": f"#/components/schemas/{OBJECT_META}"}],
                         "description": "Standard object's metadata."}
    if rt.builtin:
        props.update(copy.deepcopy(_BUILTIN_FIELDS.get(rt.kind, {})))
        if rt.kind not in _BUILTIN_FIELDS:
            base["x-kubernetes-preserve-unknown-fields"] = True
    base["x-kubernetes-group-version-kind"] = [{"group": rt.group, "kind": rt.kind, "version": version}]
    return base


def _gvk(rt: ResourceType, version: str) -> Json:
    return {"group": rt.group, "version": version, "kind": rt.kind}


def _param(name: str, where: str = "query", kind: str = "string") -> Json:
    return {"name": name, "in": where, "schema": {"type": kind}, "uniqueItems": True,
            **({"required": True} if where == "path" else {})}


def _response(ref: str) -> Json:
    return {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": ref}}}}}


def _paths(rt: ResourceType, version: str, prefix: str) -> Json:
    ref = f"#/components/schemas/{schema_name(rt, version)}"
    gvk = _gvk(rt, version)
    scope = f"{prefix}/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced else f"{prefix}/{rt.plural}"
    path_params = [_param("namespace", "path")] if rt.namespaced else []
    write_params = [_param("dryRun"), _param("fieldManager"), _param("fieldValidation")]
    body = {"content": {"*/*": {"schema": {"$ref": ref}}}, "required": True}
    patch_types = [patch.JSON_PATCH, patch.MERGE, patch.APPLY] + ([patch.STRATEGIC] if rt.builtin else [])
    patch_body = {"content": {t: {"schema": {"type": "object"}} for t in patch_types}, "required": True}

    def op(action: str, **extra: Any) -> Json:
        return {"x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk,
                "operationId": f"{action}{rt.kind}", "responses": _response(ref), **extra}

    item_ops = {
        "get": op("get"),
        "put": op("put", requestBody=body, parameters=write_params),
        "patch": op("patch", requestBody=patch_body, parameters=[*write_params, _param("force", kind="boolean")]),
        "delete": op("delete", parameters=[_param("dryRun")]),
        "parameters": [_param("name", "path"), *path_params],
    }
    paths: Json = {
        scope: {
            "get": op("list", parameters=[_param("labelSelector"), _param("fieldSelector"), _param("watch")]),
            "post": op("post", requestBody=body, parameters=write_params),
            "delete": op("deletecollection"),
            "parameters": path_params,
        },
        f"{scope}/{{name}}": item_ops,
    }
    if rt.has_status(version):
        paths[f"{scope}/{{name}}/status"] = {
            "get": op("get"),
            "put": op("put", requestBody=body, parameters=write_params),
            "patch": op("patch", requestBody=patch_body, parameters=[*write_params, _param("force", kind="boolean")]),
            "parameters": [_param("name", "path"), *path_params],
        }
    return paths


def group_version_document(group: str, version: str, resources: list[ResourceType]) -> Json:
    """The OpenAPI 3.0 document of /openapi/v3/api/v1 or /openapi/v3/apis/<group>/<version>."""
    prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
    paths: Json = {}
    schemas: Json = {OBJECT_META: _object_meta_schema()}
    for rt in resources:
        if rt.version(version) is None:
            continue
        paths.update(_paths(rt, version, prefix))
        schemas[schema_name(rt, version)] = _kind_schema(rt, version)
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.37.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def document_hash(document: Json) -> str:
    """The hash kubectl uses to cache a group-version document."""
    return hashlib.sha512(json.dumps(document, sort_keys=True).encode()).hexdigest()[:64].upper()


def index(documents: dict[str, Json]) -> Json:
    """The body of /openapi/v3: the group-version documents by path, each with its hash."""
    return {
        "paths": {
            path: {"serverRelativeURL": f"/openapi/v3/{path}?hash={document_hash(doc)}"}
            for path, doc in sorted(documents.items())
        }
    }
