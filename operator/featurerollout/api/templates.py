"""MetricTemplate and ClusterMetricTemplate: a query written once, used by many rollouts."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from featurerollout.api.analysis import ARG_NAME_PATTERN, PrometheusProvider, TemplateKind, bounds_ordered
from featurerollout.api.common import MAX_ARG_VALUE_LENGTH, MAX_QUERY_LENGTH, MAX_TEMPLATE_ARGS, Model, names_unique
from featurerollout.api.objects import ObjectMeta

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
