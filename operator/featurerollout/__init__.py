"""featurerollout: roll a feature flag out in stages, and back when Prometheus says it hurts."""

__version__ = "0.1.0"

# The group and the names live in api/group.py; re-exported here for `from featurerollout import GROUP`.
from featurerollout.api.group import API_VERSION, GROUP, KIND, PLURAL, SHORT_NAME, SINGULAR, VERSION

__all__ = ["API_VERSION", "GROUP", "KIND", "PLURAL", "SHORT_NAME", "SINGULAR", "VERSION", "__version__"]
