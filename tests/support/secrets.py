"""Secrets the tests create for the operator carry its consent label (docs/security.md#secrets-by-consent):
the operator reads a Secret a rollout names only if it is labelled `featurerollout.io/usable: "true"`."""

from __future__ import annotations

from featurerollout.api.group import annotation

USABLE: dict[str, str] = {annotation("usable"): "true"}
