"""Tracked dicts and lists on their own: what they report to their owner, and what they let in."""

from __future__ import annotations

import copy
import json
import math
import pickle
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brainlessdb.core.tracked import TrackedDict, TrackedList, track, untrack
from brainlessdb.errors import SchemaError


class Field:
    """A fake ``Owner`` (the protocol in tracked.py): records what the container holds at each report."""

    def __init__(self, name: str = "caller") -> None:
        self._name = name
        self.watched: Any = None
        self.reports: list[tuple[str, Any]] = []
        self.written: list[list[tuple[str, ...]]] = []

    @property
    def name(self) -> str:
        return self._name

    def before_nested_change(self, *change: Any) -> None:
        self.reports.append(("before", untrack(self.watched)))

    def after_nested_change(self, container: Any, paths: list[tuple[str, ...]]) -> None:
        self.reports.append(("after", untrack(self.watched)))
        self.written.append(paths)


def tracked(value: Any, name: str = "caller") -> tuple[Any, Field]:
    """``value`` tracked by a new fake owner, which watches the whole of it."""
    owner = Field(name)
    owner.watched = track(value, owner)
    return owner.watched, owner


DICT_CHANGES: list[Any] = [
    pytest.param(lambda d: d.__setitem__("city", "Brno"), {"city": "Brno", "zip": 1}, id="set"),
    pytest.param(lambda d: d.__setitem__("new", [1]), {"city": "Prague", "zip": 1, "new": [1]}, id="add"),
    pytest.param(lambda d: d.__delitem__("zip"), {"city": "Prague"}, id="del"),
    pytest.param(lambda d: d.update({"zip": 2}, city="Brno"), {"city": "Brno", "zip": 2}, id="update"),
    pytest.param(lambda d: d.__ior__({"zip": 3}), {"city": "Prague", "zip": 3}, id="|="),
    pytest.param(lambda d: d.pop("zip"), {"city": "Prague"}, id="pop"),
    pytest.param(lambda d: d.popitem(), {"city": "Prague"}, id="popitem"),
    pytest.param(lambda d: d.clear(), {}, id="clear"),
    pytest.param(lambda d: d.setdefault("new", 0), {"city": "Prague", "zip": 1, "new": 0}, id="setdefault"),
]

LIST_CHANGES: list[Any] = [
    pytest.param(lambda items: items.__setitem__(0, 9), [9, 2, 3], id="set"),
    pytest.param(lambda items: items.__setitem__(slice(0, 2), [7]), [7, 3], id="set-slice"),
    pytest.param(lambda items: items.__delitem__(1), [1, 3], id="del"),
    pytest.param(lambda items: items.__delitem__(slice(1, None)), [1], id="del-slice"),
    pytest.param(lambda items: items.append(4), [1, 2, 3, 4], id="append"),
    pytest.param(lambda items: items.extend(iter([4, 5])), [1, 2, 3, 4, 5], id="extend"),
    pytest.param(lambda items: items.__iadd__([4]), [1, 2, 3, 4], id="+="),
    pytest.param(lambda items: items.__imul__(2), [1, 2, 3, 1, 2, 3], id="*="),
    pytest.param(lambda items: items.insert(0, 0), [0, 1, 2, 3], id="insert"),
    pytest.param(lambda items: items.pop(), [1, 2], id="pop"),
    pytest.param(lambda items: items.pop(0), [2, 3], id="pop-index"),
    pytest.param(lambda items: items.remove(2), [1, 3], id="remove"),
    pytest.param(lambda items: items.clear(), [], id="clear"),
    pytest.param(lambda items: items.sort(reverse=True), [3, 2, 1], id="sort"),
    pytest.param(lambda items: items.reverse(), [3, 2, 1], id="reverse"),
]


WRITTEN_PATHS: list[Any] = [
    pytest.param(lambda v: v.__setitem__("city", "Brno"), [("city",)], id="set-key"),
    pytest.param(lambda v: v.__delitem__("zip"), [("zip",)], id="del-key"),
    pytest.param(lambda v: v.update(zip=2, city="Brno"), [("zip",), ("city",)], id="update"),
    pytest.param(lambda v: v.pop("zip"), [("zip",)], id="pop"),
    pytest.param(lambda v: v.popitem(), [("tags",)], id="popitem"),
    pytest.param(lambda v: v.clear(), [()], id="clear-is-a-write-of-the-dict"),
    pytest.param(lambda v: v["addr"].__setitem__("street", "Main"), [("addr", "street")], id="deeper"),
    pytest.param(lambda v: v["addr"]["geo"].__setitem__("lat", 1.5), [("addr", "geo", "lat")], id="deepest"),
    pytest.param(lambda v: v["addr"].clear(), [("addr",)], id="clear-below"),
    pytest.param(lambda v: v["tags"].append("x"), [("tags",)], id="list-is-one-value"),
    pytest.param(lambda v: v["tags"][0].__setitem__("k", 2), [("tags",)], id="dict-in-list"),
    pytest.param(lambda v: v.__setitem__("new", {"a": 1}), [("new",)], id="new-dict"),
    pytest.param(lambda v: v["new"].__setitem__("b", 2), [("new", "b")], id="key-of-a-dict-put-in"),
]


@pytest.mark.parametrize(("change", "paths"), WRITTEN_PATHS)
def test_a_change_reports_the_paths_below_the_field_it_wrote(
    change: Callable[[Any], Any], paths: list[tuple[str, ...]]
) -> None:
    value, owner = tracked(
        {"city": "Prague", "zip": 1, "addr": {"geo": {"lat": 0}}, "new": None, "tags": [{"k": 1}]}
    )
    if paths == [("new", "b")]:
        value["new"] = {"a": 1}
        owner.written.clear()
    change(value)
    assert owner.written == [paths]


@pytest.mark.parametrize(("change", "after"), DICT_CHANGES)
def test_every_change_of_a_dict_is_reported_before_and_after(
    change: Callable[[Any], Any], after: dict[str, Any]
) -> None:
    caller, owner = tracked({"city": "Prague", "zip": 1})
    change(caller)
    assert caller == after
    assert owner.reports == [("before", {"city": "Prague", "zip": 1}), ("after", after)]


@pytest.mark.parametrize(("change", "after"), LIST_CHANGES)
def test_every_change_of_a_list_is_reported_before_and_after(
    change: Callable[[Any], Any], after: list[Any]
) -> None:
    items, owner = tracked([1, 2, 3])
    change(items)
    assert items == after
    assert owner.reports == [("before", [1, 2, 3]), ("after", after)]


def test_reading_and_changes_that_change_nothing_are_not_reported() -> None:
    caller, owner = tracked({"city": "Prague", "tags": ["a"]})
    assert caller.pop("missing", None) is None
    assert caller.setdefault("city", "Brno") == "Prague"
    assert caller.get("city") == "Prague" and list(caller) == ["city", "tags"]
    assert caller["tags"].index("a") == 0 and caller["tags"].count("a") == 1
    assert owner.reports == []


def test_a_change_deep_inside_is_reported_to_the_same_owner() -> None:
    caller, owner = tracked({"phones": [{"number": "1"}]})
    caller["phones"][0]["number"] = "2"
    assert owner.reports == [
        ("before", {"phones": [{"number": "1"}]}),
        ("after", {"phones": [{"number": "2"}]}),
    ]


def test_containers_put_in_are_tracked_copies() -> None:
    caller, owner = tracked({})
    given_phones = [{"number": "1"}]
    caller["phones"] = given_phones
    caller.update(more={"a": [1]})
    given_phones[0]["number"] = "changed outside"
    assert caller["phones"] == [{"number": "1"}]
    assert isinstance(caller["phones"], TrackedList) and isinstance(caller["phones"][0], TrackedDict)
    assert isinstance(caller["more"]["a"], TrackedList)

    owner.reports.clear()
    caller["phones"][0]["number"] = "2"
    caller["more"]["a"].append(2)
    assert [kind for kind, _ in owner.reports] == ["before", "after", "before", "after"]
    assert owner.reports[-1] == ("after", {"phones": [{"number": "2"}], "more": {"a": [1, 2]}})


DICT_REFUSALS: list[Any] = [
    pytest.param(lambda d: d.__setitem__("k", {1, 2}), id="set of a set"),
    pytest.param(lambda d: d.__setitem__("k", math.nan), id="set of NaN"),
    pytest.param(lambda d: d.__setitem__(1, "x"), id="set of an int key"),
    pytest.param(lambda d: d.__setitem__("k", {"deep": [object()]}), id="set of a nested object"),
    pytest.param(lambda d: d.update({"ok": 1, "bad": math.inf}), id="update"),
    pytest.param(lambda d: d.__ior__({"ok": 1, "bad": b"bytes"}), id="|="),
    pytest.param(lambda d: d.setdefault("new", {1}), id="setdefault"),
]

LIST_REFUSALS: list[Any] = [
    pytest.param(lambda items: items.__setitem__(0, object()), id="set"),
    pytest.param(lambda items: items.__setitem__(slice(0, 1), [1, {2}]), id="set-slice"),
    pytest.param(lambda items: items.append(math.inf), id="append"),
    pytest.param(lambda items: items.extend([4, "\ud800"]), id="extend"),
    pytest.param(lambda items: items.__iadd__([4, {"k": math.nan}]), id="+="),
    pytest.param(lambda items: items.insert(0, (1, 2)), id="insert"),
]


@pytest.mark.parametrize("change", DICT_REFUSALS)
def test_a_value_json_cannot_hold_is_refused_and_leaves_a_dict_as_it_was(
    change: Callable[[Any], Any],
) -> None:
    caller, owner = tracked({"city": "Prague"}, name="caller")
    with pytest.raises(SchemaError) as refused:
        change(caller)
    assert refused.value.field == "caller"
    assert caller == {"city": "Prague"}
    assert owner.reports == []


@pytest.mark.parametrize("change", LIST_REFUSALS)
def test_a_value_json_cannot_hold_is_refused_and_leaves_a_list_as_it_was(
    change: Callable[[Any], Any],
) -> None:
    items, owner = tracked([1, 2, 3], name="tags")
    with pytest.raises(SchemaError) as refused:
        change(items)
    assert refused.value.field == "tags"
    assert items == [1, 2, 3]
    assert owner.reports == []


def test_untrack_gives_plain_containers_all_the_way_down_that_report_nothing() -> None:
    caller, owner = tracked({"phones": [{"number": "1"}], "city": "Prague"})
    plain = untrack(caller)
    assert plain == {"phones": [{"number": "1"}], "city": "Prague"}
    assert type(plain) is dict and type(plain["phones"]) is list and type(plain["phones"][0]) is dict
    plain["phones"][0]["number"] = "2"
    plain["city"] = "Brno"
    assert caller == {"phones": [{"number": "1"}], "city": "Prague"}
    assert owner.reports == []


def test_tracked_containers_are_dicts_and_lists_that_encode_and_pickle_as_plain_ones() -> None:
    value = {"phones": [{"number": "1"}], "n": 1}
    caller, _ = tracked(value)
    assert isinstance(caller, dict) and isinstance(caller["phones"], list)
    assert json.dumps(caller) == json.dumps(value)
    for again in (pickle.loads(pickle.dumps(caller)), copy.deepcopy(caller)):
        assert again == value
        assert type(again) is dict and type(again["phones"]) is list and type(again["phones"][0]) is dict


def test_track_makes_every_nested_container_a_tracked_one_and_leaves_scalars_alone() -> None:
    owner = Field()
    value = track({"a": [1, {"b": None}], "s": "x"}, owner)
    assert value == {"a": [1, {"b": None}], "s": "x"}
    assert isinstance(value, TrackedDict) and isinstance(value["a"], TrackedList)
    assert isinstance(value["a"][1], TrackedDict)
    assert track("x", owner) == "x" and track(None, owner) is None and track(1.5, owner) == 1.5


# A random sequence of list changes, each a method name and its arguments (indexes taken modulo the size).
LIST_OPERATIONS = st.one_of(
    st.tuples(st.just("append"), st.integers()),
    st.tuples(st.just("extend"), st.lists(st.integers(), max_size=3)),
    st.tuples(st.just("insert"), st.integers(-5, 5), st.integers()),
    st.tuples(st.just("pop"), st.integers(0, 100)),
    st.tuples(st.just("set"), st.integers(0, 100), st.integers()),
    st.tuples(st.just("del"), st.integers(0, 100)),
    st.tuples(st.just("sort")),
    st.tuples(st.just("reverse")),
    st.tuples(st.just("clear")),
)


def apply(items: list[Any], operation: tuple[Any, ...]) -> bool:
    """Apply one change to ``items``; False when it does not apply (an index into an empty list)."""
    name, *args = operation
    if name in ("pop", "set", "del"):
        if not items:
            return False
        args[0] %= len(items)
    if name == "set":
        items[args[0]] = args[1]
    elif name == "del":
        del items[args[0]]
    else:
        getattr(items, name)(*args)
    return True


@given(start=st.lists(st.integers(), max_size=5), operations=st.lists(LIST_OPERATIONS, max_size=12))
def test_a_tracked_list_holds_what_a_plain_list_would_and_reports_each_change_once(
    start: list[int], operations: list[tuple[Any, ...]]
) -> None:
    items, owner = tracked(list(start), name="tags")
    plain = list(start)
    applied = 0
    for operation in operations:
        if apply(plain, operation):
            assert apply(items, operation)
            applied += 1
            assert owner.reports[-1] == ("after", plain)
        assert items == plain
    assert [kind for kind, _ in owner.reports] == ["before", "after"] * applied


DICT_OPERATIONS = st.one_of(
    st.tuples(st.just("set"), st.sampled_from("abc"), st.integers()),
    st.tuples(st.just("del"), st.sampled_from("abc")),
    st.tuples(st.just("update"), st.dictionaries(st.sampled_from("abc"), st.integers(), max_size=2)),
    st.tuples(st.just("pop"), st.sampled_from("abc")),
    st.tuples(st.just("setdefault"), st.sampled_from("abc"), st.integers()),
    st.tuples(st.just("clear")),
)


def apply_to_dict(mapping: dict[str, Any], operation: tuple[Any, ...]) -> bool:
    """Apply one change to ``mapping``; False when it changed nothing: ``pop`` (with a default) of a missing
    key, ``setdefault`` of a present one; ``del`` of a missing key is not tried."""
    name, *args = operation
    if name == "del":
        if args[0] not in mapping:
            return False
        del mapping[args[0]]
    elif name == "set":
        mapping[args[0]] = args[1]
    elif name == "pop":
        found = args[0] in mapping
        mapping.pop(args[0], None)
        return found
    elif name == "setdefault":
        missing = args[0] not in mapping
        mapping.setdefault(*args)
        return missing
    else:
        getattr(mapping, name)(*args)
    return True


@given(
    start=st.dictionaries(st.sampled_from("abc"), st.integers()),
    operations=st.lists(DICT_OPERATIONS, max_size=12),
)
def test_a_tracked_dict_holds_what_a_plain_dict_would_and_reports_each_change_once(
    start: dict[str, int], operations: list[tuple[Any, ...]]
) -> None:
    mapping, owner = tracked(dict(start), name="caller")
    plain = dict(start)
    applied = 0
    for operation in operations:
        changed = apply_to_dict(plain, operation)
        assert apply_to_dict(mapping, operation) == changed
        if changed:
            applied += 1
            assert owner.reports[-1] == ("after", plain)
        assert mapping == plain and list(mapping) == list(plain)
    assert [kind for kind, _ in owner.reports] == ["before", "after"] * applied
