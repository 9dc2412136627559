"""Whole objects as read from the API server, and the errors that name the field of a bad one."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
)

from featurerollout.api.spec import FeatureRolloutSpec
from featurerollout.api.status import FeatureRolloutStatus

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
