"""The API group, its version, and the names of its kinds: the one place they are spelled.

The CRDs (crd.py), the models' `apiVersion` (objects.py, templates.py: there a `Literal` must
spell the string out, and tests/api checks that it is this one), the annotations the operator
writes on targets and rollouts, and every client of the API take them from here.
"""

from __future__ import annotations

GROUP = "featurerollout.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

KIND = "FeatureRollout"
PLURAL = "featurerollouts"
SINGULAR = "featurerollout"
SHORT_NAME = "fro"
CRD_NAME = f"{PLURAL}.{GROUP}"

TEMPLATE_KIND = "MetricTemplate"
TEMPLATE_PLURAL = "metrictemplates"
CLUSTER_TEMPLATE_KIND = "ClusterMetricTemplate"
CLUSTER_TEMPLATE_PLURAL = "clustermetrictemplates"


def annotation(key: str) -> str:
    """An annotation (or label) key in the API's group: `featurerollout.io/<key>`."""
    return f"{GROUP}/{key}"
