"""Just enough of Kubernetes' protobuf encoding to read what `kubectl create namespace|configmap|secret`
and helm send (typed clients write protobuf for built-in kinds and DeleteOptions). Responses stay JSON, which
those clients accept. Other kinds in protobuf answer 415.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

from featurerollout_sandbox.errors import ApiError

Json = dict[str, Any]
MAGIC = b"k8s\x00"
Field = tuple[int, int, Any]  # (number, wire type, int or bytes)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def fields(data: bytes) -> Iterator[Field]:
    """The (field number, wire type, value) triples of one protobuf message."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, wire, value
        elif wire == 2:
            length, pos = _varint(data, pos)
            yield number, wire, data[pos : pos + length]
            pos += length
        elif wire == 1:
            yield number, wire, data[pos : pos + 8]
            pos += 8
        elif wire == 5:
            yield number, wire, data[pos : pos + 4]
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _map_entry(data: bytes, binary: bool = False) -> tuple[str, str]:
    key, value = "", ""
    for number, _, raw in fields(data):
        if number == 1:
            key = raw.decode()
        elif number == 2:
            value = base64.b64encode(raw).decode() if binary else raw.decode()
    return key, value


def _object_meta(data: bytes) -> Json:
    meta: Json = {}
    strings = {1: "name", 2: "generateName", 3: "namespace", 6: "resourceVersion"}
    for number, _, raw in fields(data):
        if number in strings:
            meta[strings[number]] = raw.decode()
        elif number == 11:
            meta.setdefault("labels", {}).update([_map_entry(raw)])
        elif number == 12:
            meta.setdefault("annotations", {}).update([_map_entry(raw)])
        elif number == 14:
            meta.setdefault("finalizers", []).append(raw.decode())
    return meta


def _namespace(data: bytes) -> Json:
    obj: Json = {"apiVersion": "v1", "kind": "Namespace"}
    for number, _, raw in fields(data):
        if number == 1:
            obj["metadata"] = _object_meta(raw)
    return obj


def _config_map(data: bytes) -> Json:
    obj: Json = {"apiVersion": "v1", "kind": "ConfigMap"}
    for number, _, raw in fields(data):
        if number == 1:
            obj["metadata"] = _object_meta(raw)
        elif number == 2:
            obj.setdefault("data", {}).update([_map_entry(raw)])
        elif number == 3:
            obj.setdefault("binaryData", {}).update([_map_entry(raw, binary=True)])
        elif number == 4:
            obj["immutable"] = bool(raw)
    return obj


def _secret(data: bytes) -> Json:
    obj: Json = {"apiVersion": "v1", "kind": "Secret"}
    for number, _, raw in fields(data):
        if number == 1:
            obj["metadata"] = _object_meta(raw)
        elif number == 2:
            obj.setdefault("data", {}).update([_map_entry(raw, binary=True)])
        elif number == 3:
            obj["type"] = raw.decode()
        elif number == 4:
            obj.setdefault("stringData", {}).update([_map_entry(raw)])
        elif number == 5:
            obj["immutable"] = bool(raw)
    return obj


def _delete_options(data: bytes) -> Json:
    obj: Json = {"apiVersion": "v1", "kind": "DeleteOptions"}
    for number, _, raw in fields(data):
        if number == 1:
            obj["gracePeriodSeconds"] = raw
        elif number == 2:
            preconditions = {1: "uid", 2: "resourceVersion"}
            obj["preconditions"] = {preconditions[n]: v.decode() for n, _, v in fields(raw) if n in preconditions}
        elif number == 4:
            obj["propagationPolicy"] = raw.decode()
        elif number == 5:
            obj.setdefault("dryRun", []).append(raw.decode())
    return obj


DECODERS: dict[str, Callable[[bytes], Json]] = {
    "DeleteOptions": _delete_options,
    "Namespace": _namespace,
    "ConfigMap": _config_map,
    "Secret": _secret,
}


def decode(body: bytes) -> Json:
    """A `k8s\\0`-enveloped protobuf object as JSON; 415 for kinds the sandbox cannot read."""
    if not body.startswith(MAGIC):
        raise ApiError(415, "protobuf body without the k8s envelope")
    kind, raw = "", b""
    for number, _, value in fields(body[len(MAGIC) :]):
        if number == 1:
            for sub, _, text in fields(value):
                if sub == 2:
                    kind = text.decode()
        elif number == 2:
            raw = value
    decoder = DECODERS.get(kind)
    if decoder is None:
        raise ApiError(415, f"the sandbox reads protobuf only for {', '.join(DECODERS)}; send {kind} as JSON")
    return decoder(raw)  # a Secret's stringData is merged into data by the cluster, as for JSON
