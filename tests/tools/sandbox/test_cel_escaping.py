"""Property names in CEL rules are escaped as kube-apiserver escapes them (apiserver/pkg/cel/escaping.go).

Gateway API's HTTPRoute rules read `p.__namespace__`: without the escaping every parentRef looked
namespace-less in the sandbox, and two refs to same-named Gateways in different namespaces were
refused.
"""

from __future__ import annotations

import pytest

from featurerollout_sandbox.cel import check_rules, escape_property


@pytest.mark.parametrize(
    ("name", "seen_as"),
    [
        ("name", "name"),
        ("namespace", "__namespace__"),
        ("in", "__in__"),
        ("while", "__while__"),
        ("foo-bar", "foo__dash__bar"),
        ("a.b", "a__dot__b"),
        ("a/b", "a__slash__b"),
        ("a__b", "a__underscores__b"),
        ("x_y", "x_y"),
        ("1st", None),
        ("", None),
        ("a b", None),
        ("ä", None),
    ],
)
def test_property_names_are_escaped_like_kube_apiserver(name: str, seen_as: str | None) -> None:
    assert escape_property(name) == seen_as


def test_a_rule_reads_an_escaped_property() -> None:
    schema = {"type": "object", "properties": {"namespace": {"type": "string"}, "x-y": {"type": "integer"}},
              "x-kubernetes-validations": [{"rule": "self.__namespace__ == 'a' && self.x__dash__y == 1",
                                            "message": "no"}]}
    assert check_rules({"namespace": "a", "x-y": 1}, schema, None, "spec") == []
    assert check_rules({"namespace": "b", "x-y": 1}, schema, None, "spec")[0]["message"].endswith("no")
