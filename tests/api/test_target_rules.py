"""The httpRoute and webhook targets' own rules, enforced by both the models and the CRD.

Issue "Step real traffic: Gateway API HTTPRoute weights, and external flag services over HTTP":
no field the API accepts that the operator then refuses.
"""

from __future__ import annotations

from typing import Any

import pytest

from featurerollout import api
from tests.api.crd_helpers import apply_defaults, crd_errors, pydantic_problems, spec_schema


def spec_with(target: dict[str, Any]) -> dict[str, Any]:
    return {"flag": "new-checkout", "target": target, "stages": [{"weight": 100}]}


def test_httproute_backends_must_differ() -> None:
    spec = spec_with({"httpRoute": {"name": "shop", "stableBackend": "checkout", "featureBackend": "checkout"}})
    assert any(p.startswith("spec.target.httpRoute: ") and api.HTTPROUTE_BACKENDS_MESSAGE in p
               for p in pydantic_problems(spec)), pydantic_problems(spec)
    assert any(e.startswith("spec.target.httpRoute") and api.HTTPROUTE_BACKENDS_MESSAGE in e
               for e in crd_errors(spec)), crd_errors(spec)


@pytest.mark.parametrize("timeout", ["0", "0s", "61s", "2m", "1h"])
def test_webhook_timeout_must_be_within_0_and_60s(timeout: str) -> None:
    spec = spec_with({"webhook": {"url": "https://flags.example/api", "timeout": timeout}})
    assert any(p.startswith("spec.target.webhook.timeout: ") and api.WEBHOOK_TIMEOUT_MESSAGE in p
               for p in pydantic_problems(spec)), pydantic_problems(spec)
    assert any(e.startswith("spec.target.webhook.timeout") for e in crd_errors(spec)), crd_errors(spec)


@pytest.mark.parametrize("timeout", ["1ms", "500ms", "1s", "10s", "1m", "60s"])
def test_webhook_timeouts_within_bounds_are_accepted(timeout: str) -> None:
    spec = spec_with({"webhook": {"url": "https://flags.example/api", "timeout": timeout}})
    assert pydantic_problems(spec) == []
    assert crd_errors(spec) == []


def test_webhook_defaults_agree() -> None:
    spec = spec_with({"webhook": {"url": "https://flags.example/api",
                                  "secretRef": {"name": "flags", "key": "token"},
                                  "caSecretRef": {"name": "flags", "key": "ca.crt"}}})
    defaulted = apply_defaults(spec, spec_schema())
    assert defaulted["target"]["webhook"]["timeout"] == "10s"
    assert api.parse_spec(spec).target.to_wire() == defaulted["target"]
