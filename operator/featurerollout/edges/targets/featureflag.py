"""The featureFlag target: our flag in an OpenFeature `core.openfeature.dev/v1beta1` FeatureFlag.

The OpenFeature operator turns `spec.flagSpec.flags` into flagd configuration, so our entry
there has the same shape as in a flagd document. Writes are read-modify-replace with the
object's resourceVersion and retry on 409, like the configMap target.
"""

from __future__ import annotations

from typing import Any

from featurerollout.api import FeatureFlagTarget as FeatureFlagSpec
from featurerollout.edges.kube import NOT_FOUND, Kube, api_message, status_code
from featurerollout.edges.targets import flagd
from featurerollout.edges.targets.base import (
    Holding,
    Owner,
    TargetError,
    annotate_owner,
    annotated_owners,
    check_not_lowered,
    check_owner,
)
from featurerollout.edges.targets.coalesce import documents_of

GROUP, VERSION, PLURAL = "core.openfeature.dev", "v1beta1", "featureflags"
# The FeatureFlag CRD's schema has no room for a flag's `metadata` (the API server would prune
# it), so the owner markers live in one annotation: {"<flag>": {<Owner.marker()>}, ...}.


class FeatureFlagTarget:
    """`spec.flagSpec.flags[<flag>]` of a FeatureFlag object."""

    reads_back = True

    def __init__(self, kube: Kube, namespace: str, spec: FeatureFlagSpec, flag: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = spec.name
        self.flag = flag
        self.owner: Owner | None = None
        self.replacing: Owner | None = None
        self.read: float | None = None

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
        try:
            return flagd.flag_spec_flags(body)
        except flagd.InvalidDocument as error:
            raise TargetError("InvalidDocument", str(error)) from None

    def claim(self, owner: Owner, replacing: Owner | None = None) -> None:
        self.owner, self.replacing = owner, replacing

    def expect(self, read: float | None) -> None:
        self.read = read

    async def apply(self, weight: float) -> bool:
        def change(body: dict[str, Any]) -> dict[str, Any] | None:
            owners = annotated_owners(body)
            check_owner(self.describe(), self.flag, Owner.from_marker(owners.get(self.flag)), self.owner,
                        self.replacing)
            check_not_lowered(self.describe(), self.flag, self.read, flagd.weight_of(self._flags(body).get(self.flag)),
                              weight)
            marker_done = self.owner is None or owners.get(self.flag) == self.owner.marker()
            try:
                changed = flagd.set_flag_spec(body, self.flag, weight)
            except flagd.InvalidDocument as error:
                raise TargetError("InvalidDocument", str(error)) from None
            if changed is None and marker_done:
                return None
            if self.owner is not None:
                annotate_owner(body, self.flag, self.owner)
            return body

        async def write(body: dict[str, Any]) -> object:
            return await self.kube.call(
                self.kube.custom.replace_namespaced_custom_object,
                GROUP, VERSION, self.namespace, PLURAL, self.name, body,
            )

        # One write for every rollout whose flag lives in this FeatureFlag and is due now.
        return await documents_of(self.kube).writes.update(
            ("FeatureFlag", self.namespace, self.name), self.describe(), self._read, change, write
        )

    async def current_weight(self) -> float | None:
        return (await self.holding()).weight

    async def holding(self) -> Holding:
        # Shared with the other looks reading this FeatureFlag now (targets/coalesce.py); read only.
        body = await documents_of(self.kube).reads.read(("FeatureFlag", self.namespace, self.name), self._read)
        return Holding(flagd.weight_of(self._flags(body).get(self.flag)),
                       Owner.from_marker(annotated_owners(body).get(self.flag)))
