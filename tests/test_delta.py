"""Deltas (RFC 3229 with JSON Patch and merge patch): whatever the two documents, a patch
the edge sends rebuilds the new one exactly from the old one."""

from __future__ import annotations

import copy
import time
from typing import Any

import json_merge_patch
import jsonpatch
import orjson
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from edge.config import CachePolicy, CacheSettings
from edge.policies.cache import RouteCache

scalars = (st.none() | st.booleans() | st.integers(-(2**53), 2**53)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8))
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner,
                                                                  max_size=6),
    max_leaves=40)
# an edited version of a document: what usually happens between two versions
edits = st.tuples(documents, st.lists(st.tuples(st.text(max_size=3), documents), max_size=4))

CACHE = RouteCache(CachePolicy(ttl="60s"), "GET /x", "off", CacheSettings())


def versions(old: Any, new: Any) -> tuple[Any, Any]:
    now = time.time()
    first = CACHE.new_entry(200, [], orjson.dumps(old), "json", now, (), None, None, None)
    second = CACHE.new_entry(200, [], orjson.dumps(new), "json", now, (), None, None, first)
    return first, second


def canonical(doc: Any) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def check(old: Any, new: Any) -> set[str]:
    """Every patch the edge offers rebuilds `new` from `old` and is smaller than it; the
    kinds it offered."""
    first, second = versions(old, new)
    held = orjson.loads(first.body)  # what the app has
    offered = set()
    for kind in ("json-patch", "merge-patch"):
        patch = second.delta(first.etag, kind)
        if patch is None:
            continue  # the edge sends the whole document instead
        offered.add(kind)
        assert len(patch) < len(second.body)
        ops = orjson.loads(patch)
        if kind == "json-patch":
            rebuilt = jsonpatch.apply_patch(copy.deepcopy(held), ops)
        else:
            rebuilt = json_merge_patch.merge(copy.deepcopy(held), ops)
        assert canonical(rebuilt) == canonical(orjson.loads(second.body))
    return offered


@settings(max_examples=300, deadline=None)
@given(documents, documents)
def test_a_patch_between_any_two_documents_rebuilds_the_new_one(old: Any, new: Any) -> None:
    check(old, new)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=6), documents, min_size=1, max_size=8), edits)
def test_a_patch_for_an_edited_document_rebuilds_it(base: dict[str, Any], edit: Any) -> None:
    new = copy.deepcopy(base)
    replacement, additions = edit
    new[next(iter(new))] = replacement
    for key, value in additions:
        new[key] = value
    check(base, new)


# Most of a real document stays the same between two versions: with it, a patch for a
# small change is always much smaller than the document, so the edge must offer one.
PAD = [{"id": f"CLM-{i:04d}", "status": "processing", "amount": i * 1000} for i in range(40)]


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=6), documents, max_size=6), st.text(max_size=6),
       scalars)
def test_one_changed_member_gives_a_patch(base: dict[str, Any], key: str, value: Any
                                          ) -> None:
    old = {**base, "pad": PAD}
    assume(key != "pad")
    # a change JSON sees: Python's 1 == 1.0 == True would make jsonpatch see none
    assume(key not in old or (old[key] != value and canonical(old[key]) != canonical(value)))
    offered = check(old, {**old, key: value})
    assert "json-patch" in offered
    # merge patch: anything but "set to null", which it can't say (null means remove)
    assert ("merge-patch" in offered) == (value is not None)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, len(PAD) - 1), st.sampled_from(["status", "amount", "note"]), scalars)
def test_one_changed_item_of_a_list_gives_a_json_patch(i: int, field: str, value: Any
                                                       ) -> None:
    old = {"claims": PAD}
    new = copy.deepcopy(old)
    assume(field not in PAD[i] or (PAD[i][field] != value
                                   and canonical(PAD[i][field]) != canonical(value)))
    new["claims"][i][field] = value
    assert "json-patch" in check(old, new)  # a merge patch replaces the whole list


def test_small_changes_give_small_patches() -> None:
    old = {"claims": [{"id": f"CLM-{i}", "status": "processing", "amount": i * 1000}
                      for i in range(30)]}
    new = copy.deepcopy(old)
    new["claims"][3]["status"] = "paid"
    first, second = versions(old, new)
    patch = second.delta(first.etag, "json-patch")
    assert patch is not None and len(patch) < len(second.body) / 20
    assert orjson.loads(patch) == [{"op": "replace", "path": "/claims/3/status",
                                    "value": "paid"}]
    merge = second.delta(first.etag, "merge-patch")
    assert merge is None  # a merge patch replaces whole lists: not smaller here


def test_types_count_where_python_equality_would_not() -> None:
    first, second = versions({"a": 1}, {"a": 1.0})
    patch = second.delta(first.etag, "json-patch")
    assert patch is None or orjson.loads(patch)  # never an empty patch for a real change
