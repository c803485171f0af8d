"""Pages of queries (``limit=``/``offset=``), ``exists`` and ``exclude``, on a collection without a database.

No event loop: the collection's host answers ``ready()`` at once, so each query coroutine runs to its end
on its first step. The laws are checked with Hypothesis: a page is the whole answer sliced, the first ``n``
of an order are the full sort's first ``n``, and ``exclude`` is ``filter``'s complement.
"""

from __future__ import annotations

from collections.abc import Mapping
from operator import itemgetter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brainlessdb.core.collection import Collection
from brainlessdb.core.query import ordering
from brainlessdb.core.query.ordering import order, order_first
from brainlessdb.core.query.pages import page, select_page
from brainlessdb.core.query.plan import parse_criteria, parse_order
from brainlessdb.errors import QueryError
from tests.core.host_fakes import Host, run

Item = tuple[str, dict[str, Any]]


def uuids(entities: list[Any]) -> list[str]:
    return [entity.uuid for entity in entities]


# -- collections of generated calls -----------------------------------------------------------------

STATES = ["waiting", "ringing", "answered"]
calls = st.lists(
    st.fixed_dictionaries(
        {
            "state": st.sampled_from(STATES),
            "priority": st.one_of(st.none(), st.integers(0, 4)),
            "queue": st.integers(1, 3),
            # An empty caller has no city: a path absent from the entity.
            "caller": st.fixed_dictionaries({}, optional={"city": st.sampled_from(["Brno", "Ostrava"])}),
        }
    ),
    max_size=40,
)
# The first call fixes the schema (every field required; priority may be None).
FIRST_CALL = {"state": "waiting", "priority": None, "queue": 1, "caller": {"city": "Prague"}}

criteria = st.one_of(
    st.fixed_dictionaries({"state": st.sampled_from(STATES)}),  # answered by an index
    st.fixed_dictionaries({"priority__gte": st.integers(0, 4)}),  # by a scan
    st.fixed_dictionaries({"state__in": st.lists(st.sampled_from(STATES)), "queue__lt": st.integers(1, 4)}),
    st.fixed_dictionaries(
        {"caller__city": st.sampled_from(["Brno", "Prague"]), "priority__isnull": st.booleans()}
    ),
    st.fixed_dictionaries({"queue": st.integers(1, 3), "caller__city__isnull": st.booleans()}),
)
order_keys = st.lists(
    st.sampled_from(["state", "-state", "priority", "-priority", "queue", "-queue", "caller__city", "-uuid"]),
    min_size=1,
    max_size=3,
)
limits = st.one_of(st.none(), st.integers(0, 45))
offsets = st.integers(0, 45)


def collection_of(values: list[dict[str, Any]]) -> Collection[Any]:
    coll: Collection[Any] = Collection(Host(), "call")
    for data in [FIRST_CALL, *values]:
        coll.add(data)
    return coll


def sliced(answer: list[Any], limit: int | None, offset: int) -> list[Any]:
    return answer[offset : None if limit is None else offset + limit]


@given(calls, criteria, limits, offsets)
def test_a_filter_page_is_the_whole_filter_sliced(
    values: list[dict[str, Any]], where: dict[str, Any], limit: int | None, offset: int
) -> None:
    coll = collection_of(values)
    whole = uuids(run(coll.filter(**where)))
    assert uuids(run(coll.filter(limit=limit, offset=offset, **where))) == sliced(whole, limit, offset)
    assert uuids(run(coll.filter(limit=limit, offset=offset))) == sliced(
        uuids(run(coll.all())), limit, offset
    )


@pytest.fixture
def pruning(monkeypatch: pytest.MonkeyPatch) -> None:
    """``order_first`` sorts only what can be in the page whatever its size (it would not, for pages as
    large against the items as these tests' are)."""
    monkeypatch.setattr(ordering, "PRUNE_ONE_KEY", 1)
    monkeypatch.setattr(ordering, "PRUNE_KEYS", 1)


@given(calls, order_keys, st.one_of(st.just({}), criteria), limits, offsets)
def test_an_order_by_page_is_the_whole_sort_sliced(
    pruning: None,
    values: list[dict[str, Any]],
    keys: list[str],
    where: dict[str, Any],
    limit: int | None,
    offset: int,
) -> None:
    coll = collection_of(values)
    whole = uuids(run(coll.order_by(*keys, **where)))
    page_of = uuids(run(coll.order_by(*keys, limit=limit, offset=offset, **where)))
    assert page_of == sliced(whole, limit, offset)


@given(calls, criteria)
def test_exclude_is_the_complement_of_filter_in_the_collections_order(
    values: list[dict[str, Any]], where: dict[str, Any]
) -> None:
    coll = collection_of(values)
    matched = set(uuids(run(coll.filter(**where))))
    left = uuids(run(coll.exclude(**where)))
    assert matched.isdisjoint(left)
    assert matched | set(left) == set(coll.entities)
    assert left == [uuid for uuid in coll.entities if uuid not in matched]  # the collection's order
    assert run(coll.exists(**where)) is bool(matched)


@given(calls, criteria, limits, offsets)
def test_an_exclude_page_is_the_whole_exclude_sliced(
    values: list[dict[str, Any]], where: dict[str, Any], limit: int | None, offset: int
) -> None:
    coll = collection_of(values)
    whole = uuids(run(coll.exclude(**where)))
    assert uuids(run(coll.exclude(limit=limit, offset=offset, **where))) == sliced(whole, limit, offset)


# -- the first n of an order, on any values ---------------------------------------------------------

json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 2),
    st.sampled_from([0.5, 1.0, float("nan")]),
    st.sampled_from(["", "a", "b", "B"]),
    st.lists(st.integers(0, 1), max_size=2),
    st.dictionaries(st.sampled_from(["x", "y"]), st.integers(0, 1), max_size=1),
)
# Each item: a uuid and data where each of "a", "b" is any JSON value, or absent.
items = st.lists(st.fixed_dictionaries({}, optional={"a": json_values, "b": json_values}), max_size=60).map(
    lambda datas: [(f"u{i:02d}", data) for i, data in enumerate(datas)]
)
raw_keys = st.lists(st.sampled_from(["a", "-a", "b", "-b", "uuid", "-uuid"]), min_size=1, max_size=3)


def same_order(left: list[Item], right: list[Item]) -> bool:
    return [uuid for uuid, _ in left] == [uuid for uuid, _ in right]


@given(items, raw_keys, st.integers(0, 20), st.booleans())
def test_the_first_n_of_an_order_are_those_of_the_full_sort(
    pruning: None, entities: list[Item], keys: list[str], n: int, typed: bool
) -> None:
    # typed: the keys claim a natural kind (as a schema typing the field str would), which the values
    # here may well break: the answer must not change.
    parsed = parse_order(keys, {"a": "str", "b": "int"} if typed else None)
    full = order(entities, parsed, itemgetter(1), itemgetter(0))
    first = order_first(entities, parsed, itemgetter(1), itemgetter(0), n)
    assert same_order(first, full[:n])


def test_lists_in_a_field_typed_str_sort_the_same_whichever_items_are_sorted_with_them() -> None:
    # With the bool, the lists are ranked by their JSON text; sorted alone, lists compare with lists: the
    # first two of the order (which order_first sorts without the bool) must not change.
    entities: list[Item] = [("u00", {"a": False}), ("u01", {"a": [0]}), ("u02", {"a": []})]
    parsed = parse_order(["-a"], {"a": "str"})
    full = order(entities, parsed, itemgetter(1), itemgetter(0))
    assert same_order(order(entities[1:], parsed, itemgetter(1), itemgetter(0)), full[:2])


def test_the_first_n_of_many_are_found_without_sorting_every_item_by_every_key() -> None:
    entities = [(f"u{i:04d}", {"a": (i * 7919) % 1000, "b": i % 3}) for i in range(1000)]
    reads = 0

    def data_of(item: Item) -> Mapping[str, Any]:
        nonlocal reads
        reads += 1
        return item[1]

    keys = parse_order(["-a", "b"], None)
    first = order_first(entities, keys, data_of, itemgetter(0), 5)
    assert same_order(first, order(entities, keys, itemgetter(1), itemgetter(0))[:5])
    # One read of every item for the first key, then the few up to the cut by both keys (a full sort
    # would read every item once per key: 2000).
    assert reads < 1100


@given(items, st.sampled_from([{"a": 1}, {"a__gte": 0}, {"b__isnull": True}, {}]), st.integers(0, 70))
def test_a_scan_in_chunks_finds_what_a_whole_scan_does(
    entities: list[Item], where: dict[str, Any], stop: int
) -> None:
    conditions = parse_criteria(where, None)
    whole = [uuid for uuid, data in entities if all(c.matches(uuid, data) for c in conditions)]
    for chunk in (1, 3, 256):
        found = select_page(entities, conditions, itemgetter(1), itemgetter(0), stop, first_chunk=chunk)
        assert [uuid for uuid, _ in found] == whole[:stop]


# -- arguments -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "offset", "key"),
    [
        (-1, 0, "limit"),
        (1, -1, "offset"),
        (True, 0, "limit"),
        (1, False, "offset"),
        (2.0, 0, "limit"),
        ("3", 0, "limit"),
        (None, None, "offset"),
    ],
)
def test_a_bad_limit_or_offset_is_a_query_error_naming_it(limit: Any, offset: Any, key: str) -> None:
    coll = collection_of([])
    for query in (coll.filter, coll.exclude, coll.order_by):
        kwargs = {"state": "waiting"}
        with pytest.raises(QueryError) as raised:
            run(query(limit=limit, offset=offset, **kwargs))
        assert raised.value.key == key
    with pytest.raises(QueryError):
        page(limit, offset)


def test_limit_and_offset_are_the_page_and_fields_so_named_are_matched_with_exact() -> None:
    coll: Collection[Any] = Collection(Host(), "quota")
    for n in range(5):
        coll.add(limit=n % 2, offset=n)
    assert [e.offset for e in run(coll.filter(limit=2))] == [0, 1]  # a page, not a criterion
    assert sorted(e.offset for e in run(coll.filter(limit__exact=1))) == [1, 3]
    assert [e.offset for e in run(coll.filter(limit__exact=1, offset__gte=2, limit=1))] == [3]
    assert [e.offset for e in run(coll.order_by("-offset", limit__exact=0, offset=1))] == [2, 0]
    assert [e.offset for e in run(coll.exclude(limit__exact=1, offset=1))] == [2, 4]
    assert run(coll.exists(limit=1, offset=3)) is True  # exists takes no page: these are criteria
    assert run(coll.exists(limit=1, offset=4)) is False


def test_exclude_needs_a_criterion_and_judges_absent_paths_as_filter_does() -> None:
    coll = collection_of([{"state": "ringing", "priority": 2, "queue": 1, "caller": {}}])
    with pytest.raises(QueryError):
        run(coll.exclude())
    first, second = run(coll.all())
    # The second has no caller: an absent value equals nothing, and is null.
    assert uuids(run(coll.exclude(caller__city="Prague"))) == [second.uuid]
    assert uuids(run(coll.exclude(caller__city__isnull=True))) == [first.uuid]
    # Several criteria: left out only where all of them hold.
    assert uuids(run(coll.exclude(state="waiting", queue=1))) == [second.uuid]
    assert uuids(run(coll.exclude(state="waiting", queue=2))) == [first.uuid, second.uuid]
    with pytest.raises(QueryError):
        run(coll.exclude(unknown=1))


def test_exists_stops_at_the_first_match_and_says_false_for_an_empty_collection() -> None:
    coll: Collection[Any] = Collection(Host(), "call")
    assert run(coll.exists()) is False
    assert run(coll.exists(state="waiting")) is False
    coll.add(state="waiting", n=0)
    for n in range(1, 2000):
        coll.add(state="ringing", n=n)
    assert run(coll.exists()) is True
    assert run(coll.exists(n__lt=1)) is True
    assert run(coll.exists(state="waiting", n__gt=0)) is False
    assert run(coll.exists(state="ringing", n__gt=1998)) is True
    with pytest.raises(QueryError):
        run(coll.exists(n__gtt=1))


def test_a_page_of_absent_values_keeps_them_last() -> None:
    coll = collection_of(
        [{"state": "ringing", "priority": p, "queue": 2, "caller": {}} for p in [3, None, 1, None, 2] * 4]
    )
    firsts = run(coll.order_by("priority", limit=12))
    assert [e.priority for e in firsts] == [1] * 4 + [2] * 4 + [3] * 4
    lasts = run(coll.order_by("-priority", offset=12, limit=20))
    assert [e.priority for e in lasts] == [None] * 9


def test_a_scan_in_chunks_reads_on_until_it_has_the_page() -> None:
    entities: list[Item] = [(f"u{i:03d}", {"a": int(i >= 97)}) for i in range(100)]
    conditions = parse_criteria({"a": 1}, None)
    for stop, expected in ((1, ["u097"]), (2, ["u097", "u098"]), (5, ["u097", "u098", "u099"])):
        found = select_page(entities, conditions, itemgetter(1), itemgetter(0), stop, first_chunk=1)
        assert [uuid for uuid, _ in found] == expected
