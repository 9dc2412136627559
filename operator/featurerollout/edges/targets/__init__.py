"""Where a flag lives. One module per kind of target, behind the `Target` interface in base.py."""

from featurerollout.edges.targets.base import Target, TargetError
from featurerollout.edges.targets.factory import target_for

__all__ = ["Target", "TargetError", "target_for"]
