"""Statistics for guardrails that compare the flag's users with everyone else. Pure: no I/O, no clock.

`sequential` holds the always-valid test the operator decides with; `baselines` the two rules it is
compared against (a fixed threshold, a z-test at each look); `simulation` the seeded simulations
behind `docs/guardrails.md` (numpy: `pip install 'featurerollout[simulate]'`; the table is written by
`python -m tools.guardrail_report` from a checkout).

May import nothing of featurerollout: it sits at the bottom, beside `api`.
"""

from featurerollout.stats.sequential import Arm, Decision, Evidence, compare, stage_alpha

__all__ = ["Arm", "Decision", "Evidence", "compare", "stage_alpha"]
