"""The FeatureRollout API (featurerollout.io/v1alpha1) as pydantic models.

These models are the one source of truth: `crd.py` renders the CRD's schema from them, the
operator reads every object through them, and the CLI formats them. Field names follow
`shared/docs/api.md`; the wire format is camelCase (`failureLimit`), the Python attributes are
snake_case (`failure_limit`).

Every rule that the API server enforces through the CRD (schema or CEL) is enforced here too,
and a violation names the field path the way kube-apiserver does:
`spec.stages[2].weight: 40 is not greater than the previous stage's 50`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasGenerator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel

# --- limits shared with the CRD (a real kube-apiserver refuses CEL rules whose cost is unbounded)

MAX_STAGES = 20
MAX_METRICS = 20
MAX_QUERY_LENGTH = 10_000
MAX_NAME_LENGTH = 253
MAX_FLAG_LENGTH = 253
MAX_HEADERS = 20
MAX_TEMPLATE_ARGS = 20
MAX_ARG_VALUE_LENGTH = 1024

# --- Go-style durations ------------------------------------------------------------------------

# One or more <number><unit> groups, as Go's time.ParseDuration accepts (a bare "0" too).
DURATION_PATTERN = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$"
_DURATION_RE = re.compile(DURATION_PATTERN)
_DURATION_PART_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_duration(text: str) -> timedelta:
    """Parse a Go-style duration (`30s`, `5m`, `1h30m`, `168h`, `1.5h`) into a timedelta."""
    if not _DURATION_RE.match(text):
        raise ValueError(
            f"{text!r} is not a duration: use a number and a unit, e.g. 30s, 5m, 1h30m or 168h"
        )
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART_RE.findall(text))
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """Format a timedelta the way Go prints durations, rounded to whole seconds (`1h2m3s`)."""
    total = max(0, round(delta.total_seconds()))
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{minutes}m{seconds}s"
    return f"{seconds}s"


def _check_duration(value: str) -> str:
    parse_duration(value)
    return value


# The pattern goes to the CRD; the models check with parse_duration, whose message is friendlier.
Duration = Annotated[
    str,
    AfterValidator(_check_duration),
    Field(max_length=64, json_schema_extra={"pattern": DURATION_PATTERN}),
]

# DNS-1123 subdomain: what Kubernetes accepts as an object name.
OBJECT_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ObjectName = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=OBJECT_NAME_PATTERN)]
# A metric name doubles as a Prometheus label value and a status key: a DNS-1123 label.
METRIC_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def names_unique(items: Sequence[Any], message: str) -> None:
    """Refuse a list in which two items have one `name` (metrics, gates, template args), naming it."""
    seen: set[str] = set()
    for item in items:
        if item.name in seen:
            raise ValueError(f"{message}: {item.name!r} appears more than once")
        seen.add(item.name)


class Model(BaseModel):
    """Base of every API model: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=AliasGenerator(alias=to_camel),
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_enum_values=False,
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict as the API server stores it (camelCase, unset optionals left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# --- spec: target ------------------------------------------------------------------------------


class ConfigMapTarget(Model):
    """A flagd flag-definition document (`{"flags": {...}}`) held in a ConfigMap key."""

    name: ObjectName = Field(description="Name of the ConfigMap, in the FeatureRollout's namespace.")
    key: str = Field(
        default="flags.flagd.json",
        min_length=1,
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
        description="The ConfigMap key that holds the flagd document.",
    )


class FeatureFlagTarget(Model):
    """An OpenFeature `core.openfeature.dev/v1beta1` FeatureFlag (its `spec.flagSpec.flags`)."""

    name: ObjectName = Field(description="Name of the FeatureFlag, in the FeatureRollout's namespace.")


class HTTPRouteTarget(Model):
    """A Gateway API (gateway.networking.k8s.io/v1) HTTPRoute: in `spec.rules[rule]`, the backendRef
    named featureBackend gets weight W and the one named stableBackend 100 - W. Nothing else in
    the route changes."""

    name: ObjectName = Field(description="Name of the HTTPRoute, in the FeatureRollout's namespace.")
    rule: int = Field(default=0, ge=0, le=63, description="Index of the rule in spec.rules.")
    stable_backend: ObjectName = Field(
        description="Name of the backendRef (a Service) in that rule that serves users without the "
        "feature: it gets 100 - W."
    )
    feature_backend: ObjectName = Field(
        description="Name of the backendRef (a Service) in that rule that serves users with the "
        "feature: it gets W."
    )

    @model_validator(mode="after")
    def _two_backends(self) -> HTTPRouteTarget:
        if self.stable_backend == self.feature_backend:
            raise ValueError(HTTPROUTE_BACKENDS_MESSAGE)
        return self


HTTPROUTE_BACKENDS_MESSAGE = "stableBackend and featureBackend must name different backendRefs"


class SecretKeyRef(Model):
    """A key in a Secret in the FeatureRollout's namespace."""

    name: ObjectName = Field(description="Name of the Secret.")
    key: str = Field(
        min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$", description="Key in the Secret."
    )


WEBHOOK_TIMEOUT_MAX = timedelta(seconds=60)
WEBHOOK_TIMEOUT_MESSAGE = "must be greater than 0s and at most 60s"


class WebhookTarget(Model):
    """An external flag service: `PUT url` with JSON `{"flag", "weight", "namespace", "rollout"}`;
    any 2xx answer means applied."""

    url: str = Field(
        min_length=1, max_length=2048, pattern=r"^https?://", description="The endpoint to PUT the weight to."
    )
    secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="A bearer token for the endpoint, read from a Secret key: sent as "
        "`Authorization: Bearer <value>`.",
    )
    ca_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="A PEM CA bundle, read from a Secret key, that the endpoint's TLS certificate must "
        "chain to (default: the system's CAs). TLS is always verified.",
    )
    timeout: Duration = Field(
        default="10s", description="Per-request timeout, greater than 0s and at most 60s."
    )

    @field_validator("timeout")
    @classmethod
    def _timeout_bounded(cls, value: str) -> str:
        if not timedelta(0) < parse_duration(value) <= WEBHOOK_TIMEOUT_MAX:
            raise ValueError(f"{value!r}: {WEBHOOK_TIMEOUT_MESSAGE}")
        return value


TARGET_MEMBERS: tuple[str, ...] = ("configMap", "featureFlag", "httpRoute", "webhook")


class Target(Model):
    """Where the flag lives. Exactly one member is set."""

    config_map: ConfigMapTarget | None = Field(
        default=None, description="A flagd document in a ConfigMap (the default kind of target)."
    )
    feature_flag: FeatureFlagTarget | None = Field(default=None, description="An OpenFeature FeatureFlag.")
    http_route: HTTPRouteTarget | None = Field(default=None, description="Gateway API HTTPRoute weights.")
    webhook: WebhookTarget | None = Field(default=None, description="An external flag service.")

    @model_validator(mode="after")
    def _exactly_one_member(self) -> Target:
        if len(self.members()) != 1:
            raise ValueError(TARGET_RULE_MESSAGE)
        return self

    def members(self) -> list[str]:
        """The wire names of the members that are set."""
        values = (self.config_map, self.feature_flag, self.http_route, self.webhook)
        return [name for name, value in zip(TARGET_MEMBERS, values, strict=True) if value is not None]

    @property
    def kind(self) -> str:
        """The wire name of the one member set (`configMap`, `featureFlag`, ...)."""
        return self.members()[0]


TARGET_RULE_MESSAGE = "exactly one of configMap, featureFlag, httpRoute or webhook must be set"

# --- spec: stages ------------------------------------------------------------------------------


class Stage(Model):
    """One step of the ramp: expose `weight` percent of users for at least `duration`."""

    weight: float = Field(
        gt=0,
        le=100,
        description="Percent of users who get the feature at this stage, in (0, 100]. "
        "Fractions are allowed (0.5).",
    )
    duration: Duration | None = Field(
        default=None,
        description="How long the stage holds at least, Go-style (30s, 5m, 1h30m). "
        "Omitted: the stage advances at the first healthy analysis. The last stage needs none.",
    )

    @property
    def hold(self) -> timedelta:
        """The minimum time this stage holds."""
        return timedelta(0) if self.duration is None else parse_duration(self.duration)


DEFAULT_STAGES: tuple[Stage, ...] = (
    Stage(weight=10, duration="1h"),
    Stage(weight=25, duration="1h"),
    Stage(weight=50, duration="1h"),
    Stage(weight=100),
)

STAGES_INCREASING_MESSAGE = "stage weights must be strictly increasing"
STAGES_LAST_MESSAGE = "the last stage's weight must be exactly 100"

# --- spec: analysis ----------------------------------------------------------------------------


class OnNoData(StrEnum):
    """What a metric with no data (an empty result or NaN) does to the rollout."""

    HOLD = "Hold"  # no promotion, no rollback: wait for data
    ROLLBACK = "Rollback"  # treat as a failed evaluation
    IGNORE = "Ignore"  # treat as a passed evaluation


class OnError(StrEnum):
    """What the rollout does once the analysis has errored `consecutiveErrorLimit` times in a row."""

    ROLLBACK = "Rollback"  # to 0%, as Argo Rollouts does after consecutiveErrorLimit
    PAUSE = "Pause"  # hold the current weight and wait for a person


class PrometheusAuth(Model):
    """Credentials for Prometheus, from a Secret in the FeatureRollout's namespace."""

    secret_name: ObjectName = Field(
        description="The Secret. Keys read: `token` (bearer), or `username` and `password` (basic), "
        "and optionally `ca.crt` (a CA bundle for TLS)."
    )


class PrometheusProvider(Model):
    """Where and how to query Prometheus."""

    address: str = Field(
        min_length=1,
        max_length=2048,
        pattern=r"^https?://",
        description="Base URL of the Prometheus HTTP API, e.g. http://prometheus.monitoring:9090.",
    )
    timeout: Duration = Field(default="10s", description="Per-query timeout.")
    auth: PrometheusAuth | None = Field(default=None, description="Bearer or basic auth from a Secret.")
    headers: dict[str, str] | None = Field(
        default=None, max_length=MAX_HEADERS, description="Extra HTTP headers sent with every query."
    )
    insecure_skip_verify: bool = Field(default=False, description="Skip TLS certificate verification.")

    @field_validator("timeout")
    @classmethod
    def _timeout_parses(cls, value: str) -> str:
        if parse_duration(value) <= timedelta(0):
            raise ValueError("must be greater than 0")
        return value


class ArmQueries(Model):
    """What counts one arm's requests over the current stage: counter selectors, counted exactly by the
    operator, or PromQL expressions run as written."""

    errors: str = Field(
        min_length=1,
        max_length=MAX_QUERY_LENGTH,
        description="The counter of failed requests, as a selector, e.g. "
        'http_requests_total{flag="{{flag}}",variant="on",code=~"5.."}: the operator counts exactly what '
        "it counted since the stage began (counter resets handled; a series created mid-stage counts "
        "from 0; none at all is 0 errors when the total has data). "
        "sum(increase(SELECTOR[{{window}}])) means the same and is counted the same way; any other PromQL "
        "expression yielding one number is run as written ({{window}}: the time since the stage began).",
    )
    total: str = Field(
        min_length=1,
        max_length=MAX_QUERY_LENGTH,
        description="The counter of all requests, written as errors is, e.g. "
        'http_requests_total{flag="{{flag}}",variant="on"}.',
    )


class Compare(Model):
    """A guardrail that compares the flag's users (treatment) with everyone else (control) at the
    same time, with an always-valid sequential test, instead of holding one arm to an absolute
    budget. See docs/guardrails.md."""

    treatment: ArmQueries = Field(description="Counts of the users who get the flag (variant on).")
    control: ArmQueries = Field(description="Counts of the users who do not (variant off).")
    max_increase: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="The budget as a difference: the treatment's error rate may exceed the control's "
        "by at most this much (0.005 = half a percentage point). Set this or maxRatio.",
    )
    max_ratio: float | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="The budget as a ratio: the treatment's error rate may be at most this many times "
        "the control's (1.5). Set this or maxIncrease.",
    )
    confidence: float = Field(
        default=0.99,
        gt=0.5,
        lt=1,
        description="How sure the test must be that the treatment breaks the budget before the "
        "evaluation fails; over the whole ramp, a flag that does no harm is rolled back with "
        "probability at most 1 - confidence.",
    )
    min_sample_per_arm: int = Field(
        default=1000,
        ge=1,
        le=1_000_000_000,
        description="Requests each arm needs in the stage before any decision. Below it the metric "
        "reports NoData and holds the stage, whatever onNoData says.",
    )
    variance_inflation: float = Field(
        default=1.0,
        ge=1,
        le=1000,
        description="How many times the counts' variance exceeds that of independent requests (the design "
        "effect). flagd assigns users, not requests, to variants: when a few users fail many requests "
        "(a broken client), set it as docs/guardrails.md says; 1 assumes independent requests.",
    )

    @model_validator(mode="after")
    def _one_budget(self) -> Compare:
        if (self.max_increase is None) == (self.max_ratio is None):
            raise ValueError(COMPARE_BUDGET_MESSAGE)
        return self

    def budget(self) -> str:
        """The budget in words: `treatment <= control +0.5 pt` or `treatment <= 1.5x control`."""
        if self.max_ratio is not None:
            return f"treatment <= {self.max_ratio:g}x control"
        return f"treatment <= control {(self.max_increase or 0) * 100:+g} pt"


COMPARE_BUDGET_MESSAGE = "set exactly one of maxIncrease and maxRatio"


class TemplateKind(StrEnum):
    """The two kinds of metric template: one namespace's, or the whole cluster's."""

    METRIC_TEMPLATE = "MetricTemplate"
    CLUSTER_METRIC_TEMPLATE = "ClusterMetricTemplate"


class TemplateRef(Model):
    """A metric template by name: a MetricTemplate in the FeatureRollout's namespace (the default) or a
    ClusterMetricTemplate."""

    name: ObjectName = Field(description="The template's name.")
    kind: TemplateKind = Field(
        default=TemplateKind.METRIC_TEMPLATE, description="MetricTemplate (default) or ClusterMetricTemplate."
    )


class Metric(Model):
    """One error budget: a PromQL query that yields one number and the range it must stay in, or a
    comparison of the flag's users with everyone else (`compare`)."""

    name: str = Field(
        min_length=1, max_length=63, pattern=METRIC_NAME_PATTERN, description="Unique name of the metric."
    )
    query: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_QUERY_LENGTH,
        description="PromQL yielding one number (a scalar or a one-element vector). "
        "Variables: {{flag}}, {{name}}, {{namespace}}, {{interval}}, {{window}}. Set this or compare.",
    )
    compare: Compare | None = Field(
        default=None,
        description="Compare the treatment's error rate with the control's, sequentially. Set this or query.",
    )
    template_ref: TemplateRef | None = Field(
        default=None,
        description="A MetricTemplate (in this namespace) or ClusterMetricTemplate whose query, provider and "
        "budget this metric uses; max, min and failureLimit set here override the template's. "
        "Set this, query or compare.",
    )
    args: dict[str, Annotated[str, Field(max_length=MAX_ARG_VALUE_LENGTH)]] | None = Field(
        default=None,
        max_length=MAX_TEMPLATE_ARGS,
        description="Values for the template's {{args.NAME}} placeholders (templateRef only).",
    )
    max: float | None = Field(default=None, description="The budget's upper bound: a value above it fails.")
    min: float | None = Field(default=None, description="The budget's lower bound: a value below it fails.")
    failure_limit: int = Field(
        default=0,
        ge=0,
        le=1000,
        description="Consecutive failed evaluations tolerated; one more rolls back. Default 0, or the "
        "template's with templateRef.",
        # No schema default: with templateRef, an unset failureLimit takes the template's, so the API
        # server must store it as unset (the models read unset as 0 for the other kinds).
        json_schema_extra=lambda schema: schema.pop("default", None),  # type: ignore[arg-type]
    )

    @model_serializer(mode="wrap")
    def _unset_failure_limit_left_out(self, handler: SerializerFunctionWrapHandler) -> Any:
        # The wire form matches what the API server stores (no default for failureLimit): unset stays unset.
        data = handler(self)
        if isinstance(data, dict) and "failure_limit" not in self.model_fields_set:
            data.pop("failureLimit", None)
            data.pop("failure_limit", None)
        return data

    @field_validator("args")
    @classmethod
    def _arg_names(cls, args: dict[str, str] | None, info: ValidationInfo) -> dict[str, str] | None:
        if args is not None and info.data.get("template_ref") is None:
            raise ValueError(METRIC_ARGS_MESSAGE)
        for key in args or {}:
            if not re.match(ARG_NAME_PATTERN, key):
                raise ValueError(f"{key!r}: {ARG_NAME_MESSAGE}")
        return args

    @model_validator(mode="after")
    def _has_a_bound(self) -> Metric:
        if [self.query, self.compare, self.template_ref].count(None) != 2:
            raise ValueError(METRIC_KIND_MESSAGE)
        if self.template_ref is not None:
            # The budget may come from the template: checked when it is resolved.
            bounds_ordered(self.min, self.max)
            return self
        if self.compare is not None:
            if self.min is not None or self.max is not None:
                raise ValueError(METRIC_COMPARE_BOUNDS_MESSAGE)
            return self
        if self.min is None and self.max is None:
            raise ValueError(METRIC_BOUND_MESSAGE)
        bounds_ordered(self.min, self.max)
        return self

    def budget(self) -> str:
        """The budget in words, e.g. `<= 0.01`, `within [0.9, 1]` or `treatment <= 1.5x control`."""
        if self.compare is not None:
            return self.compare.budget()
        if self.min is None and self.max is None and self.template_ref is not None:
            return f"{self.template_ref.kind} {self.template_ref.name}'s budget"
        if self.min is not None and self.max is not None:
            return f"within [{self.min:g}, {self.max:g}]"
        if self.max is not None:
            return f"<= {self.max:g}"
        return f">= {self.min:g}"


METRIC_KIND_MESSAGE = "set exactly one of query, compare and templateRef"
METRIC_ARGS_MESSAGE = "args apply only to a metric with templateRef"
ARG_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
ARG_NAME_MESSAGE = "argument names are letters, digits and _, not starting with a digit"
METRIC_COMPARE_BOUNDS_MESSAGE = (
    "min and max do not apply to a compare metric: set compare.maxIncrease or compare.maxRatio"
)
METRIC_BOUND_MESSAGE = "set max, min or both"
METRIC_MIN_MAX_MESSAGE = "min must not be greater than max"


def bounds_ordered(low: float | None, high: float | None) -> None:
    """A budget's min must not be above its max (a metric's, a template's default)."""
    if low is not None and high is not None and low > high:
        raise ValueError(f"min ({low:g}) must not be greater than max ({high:g})")
METRICS_UNIQUE_MESSAGE = "metric names must be unique"


class Analysis(Model):
    """The error budgets, evaluated every `interval` while the rollout progresses."""

    interval: Duration = Field(default="1m", description="How often every metric is evaluated (>= 1s).")
    prometheus: PrometheusProvider | None = Field(
        default=None,
        description="The Prometheus server to query. Omitted: a metric template's own, else the operator's "
        "--prometheus-address.",
    )
    metrics: list[Metric] = Field(
        min_length=1, max_length=MAX_METRICS, description="The error budgets. Names are unique."
    )
    on_no_data: OnNoData = Field(
        default=OnNoData.HOLD,
        description="Hold (no promotion, no rollback), Rollback (counts as a failure) or Ignore "
        "(counts as a pass).",
    )
    consecutive_error_limit: int = Field(
        default=4,
        ge=0,
        le=1000,
        description="Consecutive errored evaluations (Prometheus unreachable, a broken query) "
        "tolerated; one more applies onError. Errors never promote.",
    )
    on_error: OnError = Field(
        default=OnError.ROLLBACK,
        description="After consecutiveErrorLimit errors in a row: Rollback (to 0%) or Pause.",
    )

    @field_validator("interval")
    @classmethod
    def _interval_at_least_a_second(cls, value: str) -> str:
        if parse_duration(value) < timedelta(seconds=1):
            raise ValueError(f"{value!r} is shorter than the minimum of 1s")
        return value

    @field_validator("metrics")
    @classmethod
    def _names_unique(cls, metrics: list[Metric]) -> list[Metric]:
        names_unique(metrics, METRICS_UNIQUE_MESSAGE)
        return metrics

    @property
    def every(self) -> timedelta:
        """The evaluation interval."""
        return parse_duration(self.interval)


class Rollback(Model):
    """What happens when a budget is exhausted."""

    automatic: bool = Field(
        default=True,
        description="Roll the flag back to 0% by itself. false: pause at the current weight instead.",
    )


# --- spec: gates -------------------------------------------------------------------------------

MAX_GATES = 16


class GateBefore(StrEnum):
    """The point of the rollout a gate guards."""

    START = "Start"  # before the first exposure: nothing is exposed until it opens
    STAGE = "Stage"  # before entering stage `stage` (1-based, as `kubectl get fro` counts: 2..N)
    EVERY_STAGE = "EveryStage"  # before entering every stage after the first
    SUCCESS = "Success"  # before Succeeded, once the last stage held with healthy analysis


class OnGateTimeout(StrEnum):
    """What a gate that stays closed past its timeout does."""

    HOLD = "Hold"  # keep holding the current weight, and say so (a Warning Event GateTimedOut)
    ROLLBACK = "Rollback"  # roll the flag back to 0% (reason GateTimedOut)


class GateWebhook(Model):
    """A system that confirms: `POST url` with JSON `{rollout, namespace, flag, stage, weight, gate}`;
    a 2xx answer opens the gate, anything else (or no answer) keeps it closed and it is asked again
    at the analysis interval."""

    url: str = Field(
        min_length=1, max_length=2048, pattern=r"^https?://", description="The endpoint to POST to."
    )
    secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="A bearer token, read from a Secret key: sent as `Authorization: Bearer <value>`.",
    )
    timeout: Duration = Field(default="10s", description="Per-request timeout, greater than 0s and at most 60s.")

    @field_validator("timeout")
    @classmethod
    def _timeout_bounded(cls, value: str) -> str:
        if not timedelta(0) < parse_duration(value) <= WEBHOOK_TIMEOUT_MAX:
            raise ValueError(f"{value!r}: {WEBHOOK_TIMEOUT_MESSAGE}")
        return value


class GateApproval(Model):
    """A person confirms, with `featurerollout approve NAME`. No fields (yet)."""


class Gate(Model):
    """A check that must pass before the rollout crosses a point: a webhook or a manual approval.
    A closed gate holds the current weight; it never stops analysis or an automatic rollback."""

    name: str = Field(
        min_length=1, max_length=63, pattern=METRIC_NAME_PATTERN, description="Unique name of the gate."
    )
    before: GateBefore = Field(
        description="Start (before the first exposure), Stage (before entering `stage`), EveryStage "
        "(before entering each stage after the first) or Success (before Succeeded)."
    )
    stage: int | None = Field(
        default=None,
        ge=2,
        le=MAX_STAGES,
        description="With before: Stage only: the stage (1-based, 2..number of stages) the gate is "
        "before. Stage 1 is the first exposure: use before: Start.",
    )
    webhook: GateWebhook | None = Field(default=None, description="A system confirms (set this or approval).")
    approval: GateApproval | None = Field(
        default=None, description="A person confirms with `featurerollout approve` (set this or webhook)."
    )
    timeout: Duration | None = Field(
        default=None,
        description="How long the gate may hold the rollout, from when it starts holding it. Omitted: "
        "no limit.",
    )
    on_timeout: OnGateTimeout = Field(
        default=OnGateTimeout.HOLD,
        description="Past the timeout: Hold (keep holding, and say so) or Rollback (to 0%).",
    )

    @model_validator(mode="after")
    def _rules(self) -> Gate:
        if (self.webhook is None) == (self.approval is None):
            raise ValueError(GATE_KIND_MESSAGE)
        if (self.before == GateBefore.STAGE) != (self.stage is not None):
            raise ValueError(GATE_STAGE_MESSAGE)
        return self

    @field_validator("timeout")
    @classmethod
    def _timeout_positive(cls, value: str | None) -> str | None:
        if value is not None and parse_duration(value) <= timedelta(0):
            raise ValueError(f"{value!r}: {GATE_TIMEOUT_MESSAGE}")
        return value

    @property
    def kind(self) -> str:
        """`approval` or `webhook`."""
        return "approval" if self.approval is not None else "webhook"


GATE_KIND_MESSAGE = "exactly one of webhook or approval must be set"
GATE_STAGE_MESSAGE = "stage is required with before: Stage, and only with it"
GATE_TIMEOUT_MESSAGE = "must be greater than 0s"
GATES_UNIQUE_MESSAGE = "gate names must be unique"
GATE_STAGE_RANGE_MESSAGE = "a gate's stage must be one of spec.stages (at most their number)"
# --- spec: notifications -----------------------------------------------------------------------

MAX_RECEIVERS = 10


class NotificationEvent(StrEnum):
    """What a receiver can be told about: the moments a team wants in its channel."""

    STARTED = "Started"
    STAGE_ADVANCED = "StageAdvanced"
    WAITING_FOR_APPROVAL = "WaitingForApproval"
    ROLLED_BACK = "RolledBack"
    SUCCEEDED = "Succeeded"
    ABORTED = "Aborted"


class ReceiverType(StrEnum):
    """The wire format a receiver speaks (see docs/notifications.md)."""

    SLACK = "Slack"  # a Slack incoming webhook: text + blocks
    TEAMS = "Teams"  # a Microsoft Teams incoming webhook / Workflows URL: an Adaptive Card
    WEBHOOK = "Webhook"  # generic JSON: rollout, namespace, flag, event, phase, weight, stage, ...


class Receiver(Model):
    """Where to send notifications about this rollout. The URL is a credential (a Slack or Teams
    webhook URL carries its own token), so it is read from a Secret, never written in the spec."""

    type: ReceiverType = Field(description="Slack, Teams or Webhook (generic JSON).")
    secret_ref: SecretKeyRef = Field(
        description="The Secret key (in the rollout's namespace) that holds the receiver's URL."
    )
    token_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Webhook only: a bearer token from a Secret key, sent as `Authorization: Bearer <value>`.",
    )
    events: list[NotificationEvent] | None = Field(
        default=None,
        min_length=1,
        max_length=len(NotificationEvent),
        description="The events to send. Omitted: all of Started, StageAdvanced, WaitingForApproval, "
        "RolledBack, Succeeded, Aborted.",
    )

    @model_validator(mode="after")
    def _token_only_for_webhook(self) -> Receiver:
        if self.token_secret_ref is not None and self.type != ReceiverType.WEBHOOK:
            raise ValueError(RECEIVER_TOKEN_MESSAGE)
        return self

    def wants(self, event: NotificationEvent) -> bool:
        """Does this receiver take that event?"""
        return self.events is None or event in self.events


RECEIVER_TOKEN_MESSAGE = "tokenSecretRef is only for type Webhook (a Slack or Teams URL carries its own credential)"


# --- spec --------------------------------------------------------------------------------------


class FeatureRolloutSpec(Model):
    """What to roll out, where, how fast, and under which error budgets."""

    flag: str = Field(
        min_length=1,
        max_length=MAX_FLAG_LENGTH,
        pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
        description="The flag key.",
    )
    target: Target = Field(description="Where the flag lives: exactly one member.")
    stages: list[Stage] = Field(
        default_factory=lambda: list(DEFAULT_STAGES),
        min_length=1,
        max_length=MAX_STAGES,
        description="The ramp: weights strictly increasing, the last exactly 100. "
        "Default: 10%, 25%, 50% for 1h each, then 100%.",
    )
    analysis: Analysis | None = Field(
        default=None, description="Error budgets. Without it the rollout progresses on time alone."
    )
    rollback: Rollback = Field(default_factory=Rollback, description="Rollback policy.")
    paused: bool = Field(default=False, description="Hold the rollout at its current stage.")
    gates: list[Gate] | None = Field(
        default=None,
        max_length=MAX_GATES,
        description="Checks that must pass before the rollout crosses a point (the first exposure, a "
        "stage, success): webhooks or manual approvals. A closed gate holds the current weight; "
        "analysis and automatic rollback go on. Names are unique.",
    )

    @field_validator("gates")
    @classmethod
    def _gate_names_unique(cls, gates: list[Gate] | None) -> list[Gate] | None:
        names_unique(gates or [], GATES_UNIQUE_MESSAGE)
        return gates

    @model_validator(mode="after")
    def _gate_stages_exist(self) -> FeatureRolloutSpec:
        for index, gate in enumerate(self.gates or []):
            if gate.stage is not None and gate.stage > len(self.stages):
                raise GateStageError(index, f"{gate.stage}: {GATE_STAGE_RANGE_MESSAGE} ({len(self.stages)})")
        return self
    notifications: list[Receiver] | None = Field(
        default=None,
        max_length=MAX_RECEIVERS,
        description="Receivers told about this rollout's Started, StageAdvanced, WaitingForApproval, "
        "RolledBack, Succeeded and Aborted, asynchronously: a slow or dead receiver never delays the rollout.",
    )

    @field_validator("stages")
    @classmethod
    def _stages_ramp_up_to_100(cls, stages: list[Stage]) -> list[Stage]:
        for index in range(1, len(stages)):
            previous, current = stages[index - 1].weight, stages[index].weight
            if current <= previous:
                raise StageRuleError(
                    index, f"{current:g} is not greater than the previous stage's {previous:g}"
                )
        if stages and stages[-1].weight != 100:
            raise StageRuleError(len(stages) - 1, f"{stages[-1].weight:g}: {STAGES_LAST_MESSAGE}")
        return stages


class GateStageError(ValueError):
    """A gate's stage beyond spec.stages; the message gets that gate's path."""

    def __init__(self, index: int, problem: str) -> None:
        super().__init__(f"gates[{index}].stage: {problem}")


class StageRuleError(ValueError):
    """A rule on `spec.stages` broken at one stage; the message gets that stage's path."""

    def __init__(self, index: int, problem: str) -> None:
        super().__init__(f"[{index}].weight: {problem}")
        self.index = index


# --- status ------------------------------------------------------------------------------------


class Phase(StrEnum):
    """Where a rollout is in its life. See the state diagram in README.md."""

    PENDING = "Pending"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    SUCCEEDED = "Succeeded"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"
    WAITING = "Waiting"  # held at its weight by a closed gate (spec.gates); analysis goes on


TERMINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED})

# The halt reason (and Warning Event, and target error) of a flag lowered outside the operator:
# never written back up (engine.py: check_drift; targets/base.py: check_not_lowered).
LOWERED_BY_HAND = "LoweredByHand"


def settled(status: Mapping[str, Any]) -> bool:
    """Is a stored status (the wire form) finished, so that a watcher can stop? A terminal phase,
    except a RolledBack that still has a weight: its 0% is being written (engine.rollback_intent)
    or retried, and users may still be exposed."""
    phase = status.get("phase")
    if phase == Phase.ROLLED_BACK:
        # A weight a person left by hand (halt LoweredByHand) is no rollback on its way.
        by_hand = (status.get("halt") or {}).get("reason") == LOWERED_BY_HAND
        return by_hand or float(status.get("currentWeight") or 0) <= 0
    return phase in TERMINAL_PHASES


class MetricResult(StrEnum):
    """The verdict of one evaluation of one metric."""

    PASSED = "Passed"
    FAILED = "Failed"
    NO_DATA = "NoData"
    ERROR = "Error"


class ArmStatus(Model):
    """One arm's counts over the stage, as a compare metric last measured them."""

    errors: float = Field(ge=0, description="Failed requests.")
    total: float = Field(ge=0, description="All requests.")


class TemplateUsed(Model):
    """The metric template an evaluation used: which one, and which generation of it."""

    kind: TemplateKind = Field(description="MetricTemplate or ClusterMetricTemplate.")
    name: str = Field(max_length=MAX_NAME_LENGTH, description="The template's name.")
    generation: int | None = Field(
        default=None, ge=0, description="Its metadata.generation when it was read; unset when it could not be read."
    )


class MetricStatus(Model):
    """The last evaluation of one metric."""

    name: str = Field(max_length=63, description="The metric's name.")
    value: float | None = Field(
        default=None,
        description="The last value, when there was one (for a compare metric, the treatment's "
        "error rate minus the control's, or their ratio).",
    )
    treatment: ArmStatus | None = Field(default=None, description="A compare metric's treatment counts.")
    control: ArmStatus | None = Field(default=None, description="A compare metric's control counts.")
    result: MetricResult = Field(description="Passed, Failed, NoData or Error.")
    consecutive_failures: int = Field(default=0, ge=0, description="Failed evaluations in a row.")
    consecutive_errors: int = Field(default=0, ge=0, description="Errored evaluations in a row.")
    message: str | None = Field(
        default=None, max_length=4096, description="Why, for NoData and Error; a compare metric's evidence."
    )
    evaluated_at: datetime | None = Field(default=None, description="When it was last evaluated.")
    template: TemplateUsed | None = Field(
        default=None, description="With templateRef: the template and generation this evaluation used."
    )


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(Model):
    """A Kubernetes API condition (metav1.Condition)."""

    type: str = Field(max_length=316, description="Progressing, Ready, Degraded or Analysis.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(max_length=1024, description="A CamelCase word for machines.")
    message: str = Field(default="", max_length=32768, description="Details for people.")
    last_transition_time: datetime = Field(description="When status last changed.")
    observed_generation: int | None = Field(default=None, ge=0, description="The spec it speaks of.")


class ControlAction(StrEnum):
    """A manual request from `featurerollout promote|pause|resume|abort|retry|approve`."""

    PROMOTE = "promote"
    PAUSE = "pause"
    RESUME = "resume"
    ABORT = "abort"
    RETRY = "retry"
    APPROVE = "approve"


class RequestOutcome(StrEnum):
    """What became of a manual request: every request gets exactly one."""

    DONE = "Done"
    REFUSED = "Refused"
    IGNORED = "Ignored"


class HandledRequest(Model):
    """The last manual request the operator consumed, so that each is carried out exactly once,
    and what became of it, so that the CLI can tell the person who asked."""

    id: str = Field(max_length=128, description="The request's id, from the annotation.")
    action: ControlAction = Field(description="What was asked.")
    handled_at: datetime = Field(description="When the operator handled it.")
    outcome: RequestOutcome = Field(
        default=RequestOutcome.DONE,
        description="Done (carried out), Refused (could not be carried out: see reason; ask again once "
        "fixed) or Ignored (nothing to do in this phase: see reason).",
    )
    reason: str | None = Field(default=None, max_length=4096, description="Why it was refused or ignored.")


class TargetRef(Model):
    """The flag and target that the rollout's exposure lives in: the ones it last wrote."""

    flag: str = Field(max_length=253, description="The flag key it wrote.")
    target: Target = Field(description="The target it wrote, as spec.target named it then.")


class Halt(Model):
    """Why the rollout stopped without being told to continue: a rollback, an abort, a pause for
    a breached budget or a failing analysis, or a flag lowered by hand. Kept so that the reason
    outlives later conditions (a target error) and every later message can repeat it; cleared by
    `resume` (a pause) or `retry`."""

    reason: str = Field(max_length=1024, description="BudgetExceeded, NoData, AnalysisError, GateTimedOut, Aborted, "
                        "LoweredByHand (the flag was lowered outside the operator; never written back up) or, "
                        "in phase Failed, InvalidSpec.")
    message: str = Field(max_length=4096, description="The metric, its value and its budget; or who aborted.")
    at: datetime = Field(description="When it happened.")
    metric: str | None = Field(default=None, max_length=63, description="The metric that stopped it, if one did.")
    value: float | None = Field(default=None, description="That metric's value, when it had one.")
    budget: str | None = Field(default=None, max_length=256, description="That metric's budget, e.g. `<= 0.01`.")


class GateWait(Model):
    """The gate the rollout is held at now, and since when."""

    name: str = Field(max_length=63, description="The gate's name (spec.gates[].name).")
    kind: str = Field(max_length=16, description="approval or webhook.")
    before: str = Field(max_length=32, description="The point it guards: Start, Stage N or Success.")
    since: datetime = Field(description="When it began to hold the rollout (its timeout counts from here).")
    message: str | None = Field(default=None, max_length=4096, description="Why it is closed, for people.")
    checked_at: datetime | None = Field(default=None, description="When a webhook gate was last asked.")
    timed_out: bool = Field(default=False, description="It has held longer than its timeout (onTimeout: Hold).")


class OpenedGate(Model):
    """A gate that opened for a point; kept (the latest 16, after the rollout crossed that point too,
    and once it Succeeded) until a `retry`, so that an approval outlives any later `kubectl apply` of the
    manifest and the record shows who opened what."""

    name: str = Field(max_length=63, description="The gate's name.")
    before: str = Field(max_length=32, description="The point it opened: Start, Stage N or Success.")
    at: datetime = Field(description="When it opened.")
    request_id: str | None = Field(
        default=None, max_length=128, description="For an approval: the id of the `featurerollout approve` request."
    )
    message: str | None = Field(default=None, max_length=1024, description="How it opened.")


class FeatureRolloutStatus(Model):
    """What the operator observed and did. Written only by the operator."""

    phase: Phase = Field(default=Phase.PENDING, description="Pending, Progressing, Waiting, Paused, "
                         "Succeeded, RolledBack or Failed.")
    current_stage: int = Field(default=0, ge=0, description="0-based index into spec.stages.")
    current_weight: float = Field(default=0, ge=0, le=100, description="The exposure the target holds now, "
                                  "in percent.")
    stage: str | None = Field(
        default=None, max_length=32, description="The current stage as N/M, for kubectl get."
    )
    stage_started_at: datetime | None = Field(
        default=None, description="When the target began to hold the current stage's weight."
    )
    observed_generation: int | None = Field(default=None, ge=0, description="The spec generation acted on.")
    message: str | None = Field(default=None, max_length=32768, description="What is happening, for people.")
    metrics: list[MetricStatus] = Field(
        default_factory=list, max_length=MAX_METRICS, description="The last evaluation of each metric."
    )
    conditions: list[Condition] = Field(default_factory=list, max_length=16, description="Conditions.")
    manual_pause: bool = Field(
        default=False, description="Paused by `featurerollout pause` (released by resume), apart from "
        "spec.paused so that a GitOps tool never reverts it."
    )
    last_request: HandledRequest | None = Field(default=None, description="The last manual request handled.")
    last_analysis_at: datetime | None = Field(default=None, description="When the metrics were last evaluated.")
    started_at: datetime | None = Field(default=None, description="When the rollout first exposed the flag.")
    finished_at: datetime | None = Field(default=None, description="When it reached a terminal phase.")
    halt: Halt | None = Field(
        default=None, description="Why it rolled back, was aborted or paused itself; None while healthy."
    )
    spec_hash: str | None = Field(
        default=None, max_length=64,
        description="A hash of the spec without `paused`: the plan acted on. Toggling spec.paused bumps "
        "metadata.generation but is not a change of plan, so it does not restart the stage.",
    )
    target: TargetRef | None = Field(
        default=None, description="Where the exposure lives: the flag and target last written."
    )
    gate: GateWait | None = Field(default=None, description="The gate the rollout is held at now (phase Waiting).")
    opened_gates: list[OpenedGate] = Field(
        default_factory=list, max_length=MAX_GATES,
        description="Gates that opened (approvals with their request id), the latest 16, kept until a `retry`: "
        "after the point is crossed and at Succeeded too.",
    )
    shard_lease: str | None = Field(
        default=None, max_length=253,
        description="The Lease of the operator shard that acts on this rollout (its claim, see "
        "docs/high-availability.md); empty until a leader-elected operator first looks at it.",
    )

    @property
    def terminal(self) -> bool:
        """Succeeded, RolledBack or Failed: nothing moves until a person acts."""
        return self.phase in TERMINAL_PHASES

    def condition(self, type_: str) -> Condition | None:
        """The condition of that type, if set."""
        return next((c for c in self.conditions if c.type == type_), None)


# --- the whole object --------------------------------------------------------------------------


class ObjectMeta(BaseModel):
    """The parts of metadata the operator reads."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    name: str
    namespace: str = "default"
    uid: str | None = None
    generation: int = 1
    resource_version: str | None = Field(default=None, alias="resourceVersion")
    annotations: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    deletion_timestamp: datetime | None = Field(default=None, alias="deletionTimestamp")


class FeatureRollout(BaseModel):
    """A FeatureRollout object as read from the API server."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    api_version: Literal["featurerollout.io/v1alpha1"] = Field(
        default="featurerollout.io/v1alpha1", alias="apiVersion"
    )
    kind: Literal["FeatureRollout"] = "FeatureRollout"
    metadata: ObjectMeta
    spec: FeatureRolloutSpec
    status: FeatureRolloutStatus = Field(default_factory=FeatureRolloutStatus)


# --- metric templates (MetricTemplate, ClusterMetricTemplate) ---------------------------------


class TemplateArg(Model):
    """An argument of a metric template, used in its query as `{{args.NAME}}`."""

    name: str = Field(
        min_length=1, max_length=63, pattern=ARG_NAME_PATTERN, description="The argument's name."
    )
    value: str | None = Field(
        default=None,
        max_length=MAX_ARG_VALUE_LENGTH,
        description="Its default value. Omitted: every metric that uses the template must give it in args.",
    )


class MetricTemplateSpec(Model):
    """A named query shared by many rollouts, with its Prometheus and its default budget."""

    query: str = Field(
        min_length=1,
        max_length=MAX_QUERY_LENGTH,
        description="PromQL yielding one number. Variables: {{flag}}, {{name}}, {{namespace}} (the "
        "FeatureRollout's), {{interval}}, {{window}}, and {{args.NAME}} from the metric's args or the "
        "template's defaults.",
    )
    args: list[TemplateArg] = Field(
        default_factory=list,
        max_length=MAX_TEMPLATE_ARGS,
        description="The arguments, with optional defaults. A metric may give only these and the "
        "{{args.NAME}} the query uses.",
    )
    prometheus: PrometheusProvider | None = Field(
        default=None,
        description="The Prometheus server to query. Omitted: the rollout's spec.analysis.prometheus, else "
        "the operator's --prometheus-address. An auth Secret is read from the FeatureRollout's namespace.",
    )
    max: float | None = Field(default=None, description="The default budget's upper bound.")
    min: float | None = Field(default=None, description="The default budget's lower bound.")
    failure_limit: int | None = Field(
        default=None, ge=0, le=1000, description="The default failureLimit (omitted: 0)."
    )

    @field_validator("args")
    @classmethod
    def _arg_names_unique(cls, args: list[TemplateArg]) -> list[TemplateArg]:
        names_unique(args, TEMPLATE_ARGS_UNIQUE_MESSAGE)
        return args

    @model_validator(mode="after")
    def _bounds_ordered(self) -> MetricTemplateSpec:
        bounds_ordered(self.min, self.max)
        return self


TEMPLATE_ARGS_UNIQUE_MESSAGE = "argument names must be unique"


class MetricTemplate(BaseModel):
    """A MetricTemplate or ClusterMetricTemplate as read from the API server."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    api_version: Literal["featurerollout.io/v1alpha1"] = Field(
        default="featurerollout.io/v1alpha1", alias="apiVersion"
    )
    kind: TemplateKind = TemplateKind.METRIC_TEMPLATE
    metadata: ObjectMeta
    spec: MetricTemplateSpec


# --- errors that name the field ----------------------------------------------------------------


class InvalidFeatureRollout(ValueError):
    """A FeatureRollout that breaks the API's rules; `problems` are `path: what is wrong` lines."""

    def __init__(self, name: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f'FeatureRollout "{name}" is invalid: ' + "; ".join(problems))


def field_problems(error: ValidationError, prefix: str = "spec") -> list[str]:
    """Turn pydantic's errors into `spec.stages[2].weight: ...` lines, as kube-apiserver words them."""
    problems: list[str] = []
    for item in error.errors():
        path = prefix
        for part in item["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            elif part in ("function-after", "function-before") or str(part).startswith("function-"):
                continue
            else:
                path += f".{part}"
        message = str(item["msg"]).removeprefix("Value error, ")
        if message.startswith("[") and "]." in message.split(":", 1)[0]:
            # A StageRuleError carries its own `[i].weight` suffix for the path.
            suffix, message = message.split(": ", 1)
            path += suffix
        elif message.startswith("gates[") and "]." in message.split(":", 1)[0]:
            # A GateStageError, raised on the whole spec, carries the gate's path.
            suffix, message = message.split(": ", 1)
            path += f".{suffix}"
        problems.append(f"{path}: {message}")
    return problems


def parse_spec(data: dict[str, Any], name: str = "") -> FeatureRolloutSpec:
    """Validate a spec dict (camelCase, as stored) into a model, or raise InvalidFeatureRollout."""
    try:
        return FeatureRolloutSpec.model_validate(data)
    except ValidationError as error:
        raise InvalidFeatureRollout(name, field_problems(error, "spec")) from None


def parse_rollout(body: dict[str, Any]) -> FeatureRollout:
    """Read a whole FeatureRollout object, or raise InvalidFeatureRollout naming each bad field."""
    name = str(body.get("metadata", {}).get("name", ""))
    try:
        return FeatureRollout.model_validate(body)
    except ValidationError as error:
        raise InvalidFeatureRollout(name, field_problems(error, "")) from None
