"""Names: what a namespace, a collection and a lease may be called, and errors that say so truly.

A refused name's error states the rule; these tests check that the rule stated is the rule applied.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brainlessdb.core.names import (
    COLLECTION_RULE,
    MAX_BUCKET_NAME,
    bucket_name,
    check_collection,
    check_namespace,
    collection_of_bucket,
    lease_key,
)
from brainlessdb.errors import InvalidNameError

TOKEN_CHARS = string.ascii_letters + string.digits + "_-"


@pytest.mark.parametrize("name", ["call", "Call", "x_y", "a1", "queue_items_2"])
def test_a_collection_name_is_a_letter_then_letters_digits_and_underscores(name: str) -> None:
    assert check_collection("app", name) == name


@pytest.mark.parametrize("name", ["x-y", "-x", "x-", "1x", "_x", "x.y", "x y", "", "é", "x*"])
def test_a_refused_collection_name_is_told_the_rule_it_broke(name: str) -> None:
    with pytest.raises(InvalidNameError) as refused:
        check_collection("app", name)
    error = refused.value
    assert (error.kind, error.name, error.rule) == ("collection", name, COLLECTION_RULE)
    message = str(error)
    assert "start with a letter" in message and "'-' is refused" in message
    assert "'_' and '-'" not in message  # never the namespace's rule, which allows '-'


def test_a_collection_name_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(InvalidNameError, match="start with a letter"):
        check_collection("app", 3)


@given(st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=20))
def test_a_collection_name_is_refused_exactly_when_the_stated_rule_refuses_it(name: str) -> None:
    """The rule as the message states it: a letter first, then letters, digits and '_'; no '-'."""
    stated = name[0] in string.ascii_letters and "-" not in name
    try:
        check_collection("app", name)
    except InvalidNameError:
        assert not stated
    else:
        assert stated
        assert collection_of_bucket("app", bucket_name("app", name)) == name


@given(st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=40))
def test_a_namespace_may_hold_every_character_its_rule_names_dash_included(namespace: str) -> None:
    assert check_namespace(namespace) == namespace


def test_a_refused_namespace_is_told_that_dashes_are_allowed() -> None:
    with pytest.raises(InvalidNameError, match="letters, digits, '_' and '-' only"):
        check_namespace("my.app")
    assert check_namespace("my-app") == "my-app"


def test_why_a_collection_may_not_hold_a_dash() -> None:
    """With a '-', one bucket would be two collections: namespace ``a``'s ``b-c`` and ``a-b``'s ``c``."""
    assert bucket_name("a", "b_c") != bucket_name("a_b", "c")
    assert collection_of_bucket("a-b", bucket_name("a-b", "c")) == "c"
    assert collection_of_bucket("a", bucket_name("a-b", "c")) is None


def test_a_name_too_long_for_its_bucket_says_so() -> None:
    longest = "c" * (MAX_BUCKET_NAME - len("app-"))
    assert check_collection("app", longest) == longest
    with pytest.raises(InvalidNameError, match=f"{MAX_BUCKET_NAME + 1} characters long") as refused:
        check_collection("app", longest + "c")
    assert "start with a letter" not in str(refused.value)
    with pytest.raises(InvalidNameError, match="characters long"):
        check_namespace("n" * MAX_BUCKET_NAME)


def test_lease_names_are_refused_only_when_empty_or_too_long() -> None:
    assert lease_key("dispatcher:queue-5") == "dispatcher=3Aqueue-5"
    with pytest.raises(InvalidNameError, match="non-empty string"):
        lease_key("")
    with pytest.raises(InvalidNameError, match="over 1024"):
        lease_key("x" * 1025)
