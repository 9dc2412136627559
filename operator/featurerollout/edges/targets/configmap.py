"""The configMap target: our flag's entry in a flagd document held in a ConfigMap key.

Writes are read-modify-replace with the ConfigMap's resourceVersion, so a concurrent writer's
change is never lost: on 409 Conflict the document is read again and only our entry is
re-applied to the fresh text. A missing key is created (the ConfigMap exists, so it is the
one meant); a missing ConfigMap is an error, not created, because a typo in its name would
otherwise "succeed" a rollout that no flagd ever reads.
"""

from __future__ import annotations

from typing import Any

from featurerollout.api import ConfigMapTarget as ConfigMapSpec
from featurerollout.edges.kube import NOT_FOUND, Kube, api_message, status_code
from featurerollout.edges.targets import flagd
from featurerollout.edges.targets.base import Holding, Owner, TargetError, check_not_lowered, check_owner
from featurerollout.edges.targets.coalesce import documents_of


class ConfigMapTarget:
    """A flagd document in `data[key]` of a ConfigMap."""

    reads_back = True

    def __init__(self, kube: Kube, namespace: str, spec: ConfigMapSpec, flag: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = spec.name
        self.key = spec.key
        self.flag = flag
        self.owner: Owner | None = None
        self.replacing: Owner | None = None
        self.read: float | None = None

    def describe(self) -> str:
        return f"ConfigMap {self.namespace}/{self.name} key {self.key}"

    async def _read(self) -> object:
        try:
            return await self.kube.call(self.kube.core.read_namespaced_config_map, self.name, self.namespace)
        except Exception as error:
            if status_code(error) == NOT_FOUND:
                raise TargetError(
                    "TargetNotFound",
                    f"{self.describe()}: the ConfigMap does not exist; create it (an empty one is "
                    "enough) or fix spec.target.configMap.name",
                ) from None
            raise TargetError("TargetError", f"{self.describe()}: {api_message(error)}") from None

    def claim(self, owner: Owner, replacing: Owner | None = None) -> None:
        self.owner, self.replacing = owner, replacing

    def expect(self, read: float | None) -> None:
        self.read = read

    async def apply(self, weight: float) -> bool:
        marker = self.owner.marker() if self.owner is not None else None

        def change(config_map: Any) -> Any:
            data = dict(config_map.data or {})
            current = data.get(self.key)
            try:
                entry = flagd.read_flag_entry(current, self.flag)
                check_owner(self.describe(), self.flag, Owner.from_marker(flagd.metadata_of(entry)), self.owner,
                            self.replacing)
                check_not_lowered(self.describe(), self.flag, self.read, flagd.weight_of(entry), weight)
                updated = flagd.set_flag(current, self.flag, weight, marker)
            except flagd.InvalidDocument as error:
                raise TargetError(
                    "InvalidDocument",
                    f"{self.describe()} is not a valid flagd document ({error}); it was left untouched. "
                    "Fix the JSON and the rollout carries on.",
                ) from None
            if updated == current:
                return None
            data[self.key] = updated
            config_map.data = data
            return config_map

        async def write(config_map: Any) -> object:
            return await self.kube.call(
                self.kube.core.replace_namespaced_config_map, self.name, self.namespace, config_map
            )

        # One write for every rollout whose flag lives in this ConfigMap and is due now.
        return await documents_of(self.kube).writes.update(
            ("ConfigMap", self.namespace, self.name), f"ConfigMap {self.namespace}/{self.name}", self._read, change,
            write,
        )

    async def current_weight(self) -> float | None:
        return (await self.holding()).weight

    async def holding(self) -> Holding:
        # Shared with the other looks reading this ConfigMap now (targets/coalesce.py); read only.
        config_map = await documents_of(self.kube).reads.read(("ConfigMap", self.namespace, self.name), self._read)
        text = (config_map.data or {}).get(self.key)
        try:
            entry = flagd.read_flag_entry(text, self.flag)
        except flagd.InvalidDocument as error:
            raise TargetError(
                "InvalidDocument",
                f"{self.describe()} is not a valid flagd document ({error}); it was left untouched. "
                "Fix the JSON and the rollout carries on.",
            ) from None
        return Holding(flagd.weight_of(entry), Owner.from_marker(flagd.metadata_of(entry)))
