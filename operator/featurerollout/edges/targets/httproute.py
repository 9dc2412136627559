"""The httpRoute target: traffic between two backends of a Gateway API HTTPRoute.

In `spec.rules[rule].backendRefs` of a `gateway.networking.k8s.io/v1` HTTPRoute, the backendRef
named `featureBackend` gets weight W and the one named `stableBackend` 100 - W. Nothing else in
the route is touched: other rules, other backendRefs of the same rule, filters, matches,
hostnames, parentRefs, metadata. Writes are read-modify-replace with the route's resourceVersion
and retry on 409 (targets/optimistic.py), so a concurrent writer's change to the route survives.

A route the operator cannot understand is never guessed at: a missing route, a rule index out of
range, a backendRef that is absent (or named twice) in the rule, or one that is not a core
Service all raise a TargetError with its own reason, before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from featurerollout.api import HTTPRouteTarget as HTTPRouteSpec
from featurerollout.edges.kube import NOT_FOUND, Kube, api_message, status_code
from featurerollout.edges.targets import optimistic
from featurerollout.edges.targets.base import (
    Holding,
    Owner,
    TargetError,
    annotate_owner,
    annotated_owners,
    check_not_lowered,
    check_owner,
)

GROUP, VERSION, PLURAL = "gateway.networking.k8s.io", "v1", "httproutes"

# Gateway API caps a backendRef's weight at 1,000,000, so a percentage keeps at most 4 decimals
# (100% = 1,000,000 at that scale).
MAX_DECIMALS = 4
# An absent weight means 1 (Gateway API's default; the API server fills it in on write anyway).
DEFAULT_WEIGHT = 1

ROUTE_NOT_FOUND = "TargetNotFound"
RULE_NOT_FOUND = "RuleNotFound"
BACKEND_NOT_FOUND = "BackendNotFound"
BACKEND_NOT_SERVICE = "BackendNotService"
REASONS = frozenset({ROUTE_NOT_FOUND, RULE_NOT_FOUND, BACKEND_NOT_FOUND, BACKEND_NOT_SERVICE})


def route_weights(weight: float) -> tuple[int, int]:
    """Integer weights (feature, stable) for a percentage: 25 -> (25, 75), 0.5 -> (5, 995).

    Gateway API weights are relative integers, so a fractional percentage is scaled by the power
    of ten that makes it whole (at most 4 decimals, rounded half to even beyond that)."""
    if not 0 <= weight <= 100:
        raise ValueError(f"weight {weight} is outside [0, 100]")
    exact = Decimal(str(weight)).quantize(Decimal(1).scaleb(-MAX_DECIMALS), rounding=ROUND_HALF_EVEN).normalize()
    exponent = exact.as_tuple().exponent
    scale = 10 ** max(0, -exponent) if isinstance(exponent, int) else 1
    feature = int(exact * scale)
    return feature, 100 * scale - feature


def share(feature: int, stable: int) -> float:
    """The percentage of the pair's traffic that reaches the feature backend."""
    total = feature + stable
    return 0.0 if total == 0 else round(100 * feature / total, 6)


@dataclass(frozen=True)
class Pair:
    """The two backendRefs of the rule, as found in the route (the dicts are the route's own)."""

    feature: dict[str, Any]
    stable: dict[str, Any]

    @property
    def weights(self) -> tuple[int, int]:
        return int(self.feature.get("weight", DEFAULT_WEIGHT)), int(self.stable.get("weight", DEFAULT_WEIGHT))


class HTTPRouteTarget:
    """The weights of two backendRefs in one rule of an HTTPRoute."""

    reads_back = True

    def __init__(self, kube: Kube, namespace: str, spec: HTTPRouteSpec) -> None:
        self.kube = kube
        self.namespace = namespace
        self.spec = spec
        self.owner: Owner | None = None
        self.replacing: Owner | None = None
        self.read: float | None = None

    @property
    def owner_key(self) -> str:
        """The split this target drives, as its owner marker's key in the route's annotation."""
        return f"rules[{self.spec.rule}]/{self.spec.feature_backend}"

    def claim(self, owner: Owner, replacing: Owner | None = None) -> None:
        self.owner, self.replacing = owner, replacing

    def expect(self, read: float | None) -> None:
        self.read = read

    async def holding(self) -> Holding:
        route = await self._read()
        return Holding(share(*self.find_pair(route).weights),
                       Owner.from_marker(annotated_owners(route).get(self.owner_key)))

    def describe(self) -> str:
        return f"HTTPRoute {self.namespace}/{self.spec.name} rule {self.spec.rule}"

    async def _read(self) -> dict[str, Any]:
        try:
            body: dict[str, Any] = await self.kube.call(
                self.kube.custom.get_namespaced_custom_object,
                GROUP, VERSION, self.namespace, PLURAL, self.spec.name,
            )
            return body
        except Exception as error:
            if status_code(error) == NOT_FOUND:
                raise TargetError(
                    ROUTE_NOT_FOUND,
                    f"HTTPRoute {self.namespace}/{self.spec.name} does not exist (or the Gateway API CRDs "
                    "are not installed); create it or fix spec.target.httpRoute.name",
                ) from None
            raise TargetError("TargetError", f"{self.describe()}: {api_message(error)}") from None

    def find_pair(self, route: dict[str, Any]) -> Pair:
        """The feature and stable backendRefs of the rule, or a TargetError saying what is wrong."""
        spec = self.spec
        rules = (route.get("spec") or {}).get("rules") or []
        if spec.rule >= len(rules):
            have = "no rules" if not rules else f"{len(rules)} rule{'s' if len(rules) > 1 else ''} " \
                f"(spec.rules[0..{len(rules) - 1}])"
            raise TargetError(
                RULE_NOT_FOUND,
                f"HTTPRoute {self.namespace}/{spec.name} has {have}, so spec.target.httpRoute.rule {spec.rule} "
                "is out of range; fix the index. The route was left untouched.",
            )
        refs = rules[spec.rule].get("backendRefs") or []
        found: dict[str, dict[str, Any]] = {}
        for field, name in (("featureBackend", spec.feature_backend), ("stableBackend", spec.stable_backend)):
            matching = [ref for ref in refs if ref.get("name") == name]
            names = ", ".join(str(ref.get("name")) for ref in refs) or "none"
            if not matching:
                raise TargetError(
                    BACKEND_NOT_FOUND,
                    f"{self.describe()} has no backendRef named {name!r} (spec.target.httpRoute.{field}); "
                    f"its backendRefs are: {names}. Add it to the route or fix the name. The route was "
                    "left untouched.",
                )
            if len(matching) > 1:
                raise TargetError(
                    BACKEND_NOT_FOUND,
                    f"{self.describe()} has {len(matching)} backendRefs named {name!r} "
                    f"(spec.target.httpRoute.{field}), so which one to weigh is ambiguous. The route was "
                    "left untouched.",
                )
            ref = matching[0]
            kind, group = ref.get("kind", "Service"), ref.get("group", "")
            if kind != "Service" or group not in ("", "core"):
                kind_words = f"kind {kind}" + (f" of group {group}" if group else "")
                raise TargetError(
                    BACKEND_NOT_SERVICE,
                    f"{self.describe()}: backendRef {name!r} (spec.target.httpRoute.{field}) is {kind_words}, "
                    "not a Service; the operator weighs Service backends only. The route was left untouched.",
                )
            found[field] = ref
        return Pair(feature=found["featureBackend"], stable=found["stableBackend"])

    async def apply(self, weight: float) -> bool:
        feature, stable = route_weights(weight)

        def change(route: dict[str, Any]) -> dict[str, Any] | None:
            pair = self.find_pair(route)  # raises before anything is changed
            marked = annotated_owners(route).get(self.owner_key)
            check_owner(self.describe(), self.owner_key, Owner.from_marker(marked), self.owner, self.replacing)
            check_not_lowered(self.describe(), self.owner_key, self.read, share(*pair.weights), weight)
            marker_done = self.owner is None or marked == self.owner.marker()
            if (pair.weights == (feature, stable) and "weight" in pair.feature and "weight" in pair.stable
                    and marker_done):
                return None
            pair.feature["weight"] = feature
            pair.stable["weight"] = stable
            if self.owner is not None:
                annotate_owner(route, self.owner_key, self.owner)
            return route

        async def write(route: dict[str, Any]) -> object:
            # A replace carries the resourceVersion that was read: a concurrent write makes it 409.
            return await self.kube.call(
                self.kube.custom.replace_namespaced_custom_object,
                GROUP, VERSION, self.namespace, PLURAL, self.spec.name, route,
            )

        return await optimistic.update(self.describe(), self._read, change, write)

    async def current_weights(self) -> tuple[int, int]:
        """The (feature, stable) weights the route holds now."""
        return self.find_pair(await self._read()).weights

    async def current_weight(self) -> float | None:
        return share(*await self.current_weights())
