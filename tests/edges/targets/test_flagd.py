"""The flagd document builder: the entry's shape, weights, and byte-for-byte splicing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from featurerollout.edges.targets.flagd import (
    InvalidDocument,
    flag_entry,
    read_flag_weight,
    relative_weights,
    set_flag,
)

SHARED = """{
  "$schema": "https://flagd.dev/schema/v0/flags.json",
  "flags": {
    "dark-mode": {"state": "ENABLED", "variants": {"a": 1.0e0, "b": 2}, "defaultVariant": "a"},
    "new-checkout": {
      "state": "DISABLED",
      "variants": {"on": true, "off": false},
      "defaultVariant": "off"
    },
    "search-v2":   { "state":"ENABLED","variants":{"x":"y"},"defaultVariant":"x" }
  }
}
"""


def test_entry_at_weight_matches_the_contract() -> None:
    assert flag_entry(25) == {
        "state": "ENABLED",
        "variants": {"on": True, "off": False},
        "defaultVariant": "off",
        "targeting": {"fractional": [["on", 25], ["off", 75]]},
    }


@pytest.mark.parametrize(
    ("weight", "expected"),
    [(0, (0, 100)), (10, (10, 90)), (100, (100, 0)), (0.5, (5, 995)), (12.5, (125, 875)), (0.25, (25, 9975))],
)
def test_fractional_weights_are_integer_relative_weights(weight: float, expected: tuple[int, int]) -> None:
    assert relative_weights(weight) == expected


def test_treatment_variant_comes_first() -> None:
    assert flag_entry(10)["targeting"]["fractional"][0][0] == "on"


def test_only_our_entry_changes_and_other_flags_stay_byte_for_byte() -> None:
    updated = set_flag(SHARED, "new-checkout", 25)
    assert '"dark-mode": {"state": "ENABLED", "variants": {"a": 1.0e0, "b": 2}, "defaultVariant": "a"}' in updated
    assert '"search-v2":   { "state":"ENABLED","variants":{"x":"y"},"defaultVariant":"x" }' in updated
    assert updated.startswith('{\n  "$schema": "https://flagd.dev/schema/v0/flags.json",\n  "flags": {\n')
    document = json.loads(updated)
    assert document["flags"]["new-checkout"] == flag_entry(25)
    assert read_flag_weight(updated, "new-checkout") == 25


def test_unchanged_weight_returns_the_same_text() -> None:
    once = set_flag(SHARED, "new-checkout", 50)
    assert set_flag(once, "new-checkout", 50) is once


def test_missing_flag_is_added_after_the_others() -> None:
    updated = set_flag(SHARED, "brand-new", 10)
    assert updated.index('"search-v2"') < updated.index('"brand-new"')
    assert json.loads(updated)["flags"]["brand-new"] == flag_entry(10)
    assert json.loads(updated)["flags"]["dark-mode"] == json.loads(SHARED)["flags"]["dark-mode"]


def test_empty_or_missing_document_becomes_a_fresh_one() -> None:
    for text in (None, "", "  \n"):
        assert json.loads(set_flag(text, "f", 10))["flags"] == {"f": flag_entry(10)}


def test_document_without_flags_member_gets_one() -> None:
    updated = set_flag('{"$schema": "x"}', "f", 10)
    assert json.loads(updated) == {"$schema": "x", "flags": {"f": flag_entry(10)}}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{not json", "member name"),
        ("[1, 2]", "JSON object"),
        ('{"flags": 3}', '"flags" member is not a JSON object'),
        ('{"flags": {}} trailing', "unexpected text"),
        ('{"flags": {"a": }}', "not valid JSON"),
    ],
)
def test_invalid_document_is_refused_not_overwritten(text: str, words: str) -> None:
    with pytest.raises(InvalidDocument, match=words):
        set_flag(text, "f", 10)


def test_weight_zero_serves_off_to_everyone_and_hundred_serves_on() -> None:
    assert flag_entry(0)["targeting"]["fractional"] == [["on", 0], ["off", 100]]
    assert flag_entry(100)["targeting"]["fractional"] == [["on", 100], ["off", 0]]
    assert read_flag_weight(set_flag(None, "f", 0), "f") == 0
    assert read_flag_weight(set_flag(None, "f", 100), "f") == 100


flag_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@given(
    others=st.dictionaries(flag_names, json_values, max_size=5),
    ours=flag_names,
    weight=st.sampled_from([0, 0.5, 1, 10, 25, 33.3, 50, 99.9, 100]),
    indent=st.sampled_from([None, 2, 4]),
)
def test_other_flags_survive_any_document(
    others: dict[str, object], ours: str, weight: float, indent: int | None
) -> None:
    others = {k: v for k, v in others.items() if k != ours}
    text = json.dumps({"flags": others, "other": [1, 2]}, indent=indent)
    updated = set_flag(text, ours, weight)
    document = json.loads(updated)
    assert document["other"] == [1, 2]
    assert {k: v for k, v in document["flags"].items() if k != ours} == others
    assert read_flag_weight(updated, ours) == pytest.approx(weight)
    # Byte-for-byte: the update only inserts text; everything that was there stays, in order.
    prefix = 0
    while prefix < len(text) and updated[prefix] == text[prefix]:
        prefix += 1
    assert updated.endswith(text[prefix:])


def test_flag_spec_gets_our_entry_and_keeps_everything_else() -> None:
    from featurerollout.edges.targets.flagd import set_flag_spec

    body = {"metadata": {"name": "ff"}, "spec": {"flagSpec": {"flags": {"dark-mode": {"state": "ENABLED"}},
                                                              "$evaluators": {"x": {}}}}}
    updated = set_flag_spec(body, "new-checkout", 0.5)
    assert updated is not None
    assert updated["spec"]["flagSpec"] == {
        "flags": {"dark-mode": {"state": "ENABLED"}, "new-checkout": flag_entry(0.5)}, "$evaluators": {"x": {}},
    }
    assert set_flag_spec(updated, "new-checkout", 0.5) is None  # already there: nothing to write
    assert set_flag_spec({}, "f", 10) == {"spec": {"flagSpec": {"flags": {"f": flag_entry(10)}}}}
    with pytest.raises(InvalidDocument, match=r"spec\.flagSpec\.flags is not an object"):
        set_flag_spec({"spec": {"flagSpec": {"flags": []}}}, "f", 10)


def deeply_nested(depth: int) -> str:
    """A flagd document whose OTHER flag holds `depth` nested arrays; ours is absent or plain."""
    other = "[" * depth + "]" * depth
    return '{"flags": {"mine": {"state": "DISABLED", "defaultVariant": "off"}, "theirs": {"variants": {"x": '\
        + other + '}}}}'


@pytest.mark.parametrize("depth", [1_000, 10_000])
def test_a_deeply_nested_other_flag_is_an_invalid_document_never_a_recursion_error(depth: int) -> None:
    from featurerollout.edges.targets.flagd import read_flag_entry

    text = deeply_nested(depth)
    with pytest.raises(InvalidDocument, match=rf"nested {depth + 4} deep, more than the 256"):
        read_flag_entry(text, "mine")
    with pytest.raises(InvalidDocument, match=rf"nested {depth + 4} deep, more than the 256"):
        set_flag(text, "mine", 10)


def test_nesting_up_to_the_limit_parses_and_brackets_in_strings_do_not_count() -> None:
    from featurerollout.edges.targets.flagd import MAX_DEPTH, json_depth, read_flag_entry

    within = deeply_nested(MAX_DEPTH - 4)
    assert json_depth(within) == MAX_DEPTH
    assert read_flag_weight(within, "mine") == 0
    assert read_flag_weight(set_flag(within, "mine", 25), "mine") == 25
    quoted = '{"flags": {"mine": {"state": "DISABLED", "x": "' + "[{" * 5000 + '\\" [["}}}'
    assert json_depth(quoted) == 3
    assert read_flag_entry(quoted, "mine")["x"].startswith("[{[{")


def test_a_document_larger_than_the_cap_is_invalid_and_so_is_one_we_would_make_larger() -> None:
    from featurerollout.edges.targets.flagd import MAX_DOCUMENT_BYTES, read_flag_entry

    pad = MAX_DOCUMENT_BYTES - 100
    over = '{"flags": {"theirs": {"x": "' + "p" * (pad + 200) + '"}}}'
    with pytest.raises(InvalidDocument, match=r"more than the 1048576 \(1 MiB\) the operator parses"):
        read_flag_entry(over, "mine")
    near = '{"flags": {"theirs": {"x": "' + "p" * (pad - 20) + '"}}}'
    assert read_flag_entry(near, "mine") is None
    with pytest.raises(InvalidDocument, match=r"with the flag's entry it would be \d+ bytes"):
        set_flag(near, "mine", 10)


def test_a_flag_spec_nested_too_deep_is_invalid() -> None:
    from featurerollout.edges.targets.flagd import set_flag_spec

    nested: list[object] = []
    for _ in range(400):
        nested = [nested]
    with pytest.raises(InvalidDocument, match="more than the 256 deep"):
        set_flag_spec({"spec": {"flagSpec": {"flags": {"theirs": {"x": nested}}}}}, "f", 10)
