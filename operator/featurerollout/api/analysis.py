"""`spec.analysis`: the Prometheus to ask, the metrics and their budgets, what to do on no data."""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from featurerollout.api.common import (
    MAX_ARG_VALUE_LENGTH,
    MAX_HEADERS,
    MAX_METRICS,
    MAX_QUERY_LENGTH,
    MAX_TEMPLATE_ARGS,
    METRIC_NAME_PATTERN,
    Duration,
    Model,
    ObjectName,
    names_unique,
    parse_duration,
)

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
