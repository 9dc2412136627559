"""The FeatureRollout spec: target, stages, gates and notifications (analysis: analysis.py)."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from featurerollout.api.analysis import Analysis, Rollback
from featurerollout.api.common import (
    MAX_FLAG_LENGTH,
    MAX_STAGES,
    METRIC_NAME_PATTERN,
    Duration,
    Model,
    ObjectName,
    names_unique,
    parse_duration,
)

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
