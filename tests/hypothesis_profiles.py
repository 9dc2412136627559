"""Hypothesis profiles for this suite, loaded by tests/conftest.py before any test module.

Why a profile at all: on a fresh clone (no `.hypothesis/`), Hypothesis first builds its unicode
character cache, which takes a second or more on a loaded 2-core machine and trips the
`too_slow` health check in whichever text-drawing test runs first. A second run is green. A
suite that is red on its first run on every new CI machine proves nothing, so the profiles
state what they check, on purpose:

- deadline: None. A per-example wall-clock deadline measures the machine's load, not the code;
  this suite's rule is that speed is measured by benchmarks (docs/benchmarks.md), never asserted.
- health checks: `too_slow` is off, for the reason above (generation speed depends on the
  machine and on the first-run cache). Every other health check stays on, because each of them
  points at a real defect in a strategy: `filter_too_much` (a filter that rejects most inputs),
  `data_too_large`, `large_base_example`, `return_value` (a test that returns something),
  `function_scoped_fixture` (a fixture not reset between examples), ...

Profiles: `ci` (the default, what `make test` runs), `dev` (fewer examples, for a quick loop),
`thorough` (many more examples, to hunt for a counterexample). Choose one with
`HYPOTHESIS_PROFILE=dev .venv/bin/pytest ...`. A test may still set its own `@settings`; the
values it does not set come from the loaded profile.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Verbosity, settings

# Kept on in every profile: each one flags a defect in a strategy or a test, never in the machine.
KEPT_HEALTH_CHECKS = tuple(check for check in HealthCheck if check is not HealthCheck.too_slow)
SUPPRESSED_HEALTH_CHECKS = (HealthCheck.too_slow,)

COMMON = {"deadline": None, "suppress_health_check": SUPPRESSED_HEALTH_CHECKS, "print_blob": True}

settings.register_profile("ci", max_examples=100, **COMMON)  # type: ignore[arg-type]
settings.register_profile("dev", max_examples=30, **COMMON)  # type: ignore[arg-type]
settings.register_profile("thorough", max_examples=2000, verbosity=Verbosity.normal, **COMMON)  # type: ignore[arg-type]

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")


def load() -> str:
    """Load the profile named by HYPOTHESIS_PROFILE (default `ci`); returns its name."""
    settings.load_profile(PROFILE)
    return PROFILE
