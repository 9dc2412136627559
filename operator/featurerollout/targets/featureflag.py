"""The featureFlag target: our flag in an OpenFeature `core.openfeature.dev/v1beta1` FeatureFlag.

The OpenFeature operator turns `spec.flagSpec.flags` into flagd configuration, so our entry
there has the same shape as in a flagd document. Writes are read-modify-replace with the
object's resourceVersion and retry on 409, like the configMap target.
"""

from __future__ import annotations

from typing import Any

from featurerollout import flagd
from featurerollout.api import FeatureFlagTarget as FeatureFlagSpec
from featurerollout.kube import NOT_FOUND, Kube, api_message, status_code
from featurerollout.targets import optimistic
from featurerollout.targets.base import TargetError

GROUP, VERSION, PLURAL = "core.openfeature.dev", "v1beta1", "featureflags"


class FeatureFlagTarget:
    """`spec.flagSpec.flags[<flag>]` of a FeatureFlag object."""

    reads_back = True

    def __init__(self, kube: Kube, namespace: str, spec: FeatureFlagSpec, flag: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = spec.name
        self.flag = flag

    def describe(self) -> str:
        return f"FeatureFlag {self.namespace}/{self.name}"

    async def _read(self) -> dict[str, Any]:
        try:
            body: dict[str, Any] = await self.kube.call(
                self.kube.custom.get_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURAL, self.name
            )
            return body
        except Exception as error:
            if status_code(error) == NOT_FOUND:
                raise TargetError(
                    "TargetNotFound",
                    f"{self.describe()} does not exist (or the OpenFeature CRD is not installed); "
                    "create it or fix spec.target.featureFlag.name",
                ) from None
            raise TargetError("TargetError", f"{self.describe()}: {api_message(error)}") from None

    @staticmethod
    def _flags(body: dict[str, Any]) -> dict[str, Any]:
        flags = body.setdefault("spec", {}).setdefault("flagSpec", {}).setdefault("flags", {})
        if not isinstance(flags, dict):
            raise TargetError("InvalidDocument", "spec.flagSpec.flags is not an object; left untouched")
        return flags

    async def apply(self, weight: float) -> bool:
        entry = flagd.flag_entry(weight)

        def change(body: dict[str, Any]) -> dict[str, Any] | None:
            flags = self._flags(body)
            if flags.get(self.flag) == entry:
                return None
            flags[self.flag] = entry
            return body

        async def write(body: dict[str, Any]) -> object:
            return await self.kube.call(
                self.kube.custom.replace_namespaced_custom_object,
                GROUP, VERSION, self.namespace, PLURAL, self.name, body,
            )

        return await optimistic.update(self.describe(), self._read, change, write)

    async def current_weight(self) -> float | None:
        return flagd.weight_of(self._flags(await self._read()).get(self.flag))
