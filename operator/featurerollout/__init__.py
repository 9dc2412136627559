"""featurerollout: roll a feature flag out in stages, and back when Prometheus says it hurts."""

__version__ = "0.1.0"

GROUP = "featurerollout.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "FeatureRollout"
PLURAL = "featurerollouts"
SINGULAR = "featurerollout"
SHORT_NAME = "fro"
