"""Deltas (RFC 3229 with JSON Patch and merge patch): whatever the two documents, a patch
the edge sends rebuilds the new one exactly from the old one."""

from __future__ import annotations

import copy
import time
from typing import Any

import json_merge_patch
import jsonpatch
import orjson
from hypothesis import given, settings
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


def check(old: Any, new: Any) -> None:
    first, second = versions(old, new)
    held = orjson.loads(first.body)  # what the app has
    for kind in ("json-patch", "merge-patch"):
        patch = second.delta(first.etag, kind)
        if patch is None:
            continue  # the edge sends the whole document instead
        assert len(patch) < len(second.body)
        ops = orjson.loads(patch)
        if kind == "json-patch":
            rebuilt = jsonpatch.apply_patch(copy.deepcopy(held), ops)
        else:
            rebuilt = json_merge_patch.merge(copy.deepcopy(held), ops)
        assert canonical(rebuilt) == canonical(orjson.loads(second.body))


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
