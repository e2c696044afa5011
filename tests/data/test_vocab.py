"""Vocabulary: external ids <-> dense int32 codes (known answers worked out by hand)."""

import numpy as np
import pandas as pd
import pytest

from tastemaker.data.vocab import Vocabulary
from tastemaker.errors import UnknownIdError


def test_codes_are_positions_and_round_trip():
    vocab = Vocabulary(["b", "a", "c"], name="item")
    # the position of an id is its code: b=0, a=1, c=2
    codes = vocab.encode(["c", "b", "a", "b"])
    assert codes.tolist() == [2, 0, 1, 0]
    assert codes.dtype == np.int32
    assert vocab.decode(codes).tolist() == ["c", "b", "a", "b"]
    assert vocab.decode(vocab.encode(vocab.ids)).tolist() == ["b", "a", "c"]
    assert len(vocab) == 3
    assert vocab.code("c") == 2


def test_empty_inputs():
    vocab = Vocabulary(["a"])
    out = vocab.encode([])
    assert out.dtype == np.int32 and out.shape == (0,)
    assert vocab.decode([]).tolist() == []
    assert len(Vocabulary()) == 0


def test_missing_error_names_the_unknown_id():
    vocab = Vocabulary(["a", "b"], name="user")
    with pytest.raises(UnknownIdError, match="zz") as info:
        vocab.encode(["a", "zz"])
    assert "user" in str(info.value)
    # UnknownIdError is a KeyError, so callers can catch either
    assert isinstance(info.value, KeyError)
    with pytest.raises(UnknownIdError):
        vocab.code("nope")


def test_missing_mark_gives_minus_one_in_place():
    vocab = Vocabulary(["a", "b"])
    assert vocab.encode(["b", "zz", "a", "yy"], missing="mark").tolist() == [1, -1, 0, -1]


def test_missing_drop_leaves_unknown_out():
    vocab = Vocabulary(["a", "b"])
    assert vocab.encode(["b", "zz", "a", "yy"], missing="drop").tolist() == [1, 0]
    assert vocab.encode(["zz"], missing="drop").tolist() == []


def test_decode_out_of_range_raises():
    vocab = Vocabulary(["a", "b"])
    with pytest.raises(IndexError):
        vocab.decode([2])
    with pytest.raises(IndexError):
        vocab.decode([-1])


def test_numeric_ids_equal_their_strings():
    vocab = Vocabulary([1, 2, 30])
    assert vocab.ids.tolist() == ["1", "2", "30"]
    # 1 and "1" are the same id
    assert vocab.encode(["1", 1, np.int64(30)]).tolist() == [0, 0, 2]
    assert 1 in vocab and "1" in vocab
    # float ids that are whole numbers (pandas int column with gaps) mean the integer
    assert vocab.encode([3.0 - 1.0, 30.0]).tolist() == [1, 2]
    assert vocab.encode(np.array([1.0, 2.0])).tolist() == [0, 1]
    assert vocab.encode(pd.Series([30.0, 1.0])).tolist() == [2, 0]
    assert Vocabulary.from_values(np.array([3.0, 1.0, 3.0])).ids.tolist() == ["3", "1"]
    # a genuinely fractional id stays as it is
    assert Vocabulary([2.5]).ids.tolist() == ["2.5"]


def test_duplicates_refused_including_numeric_and_string_spellings():
    with pytest.raises(ValueError, match="duplicate"):
        Vocabulary(["a", "b", "a"])
    with pytest.raises(ValueError, match="duplicate"):
        Vocabulary([1, "1"])  # same id once both are strings
    with pytest.raises(ValueError, match="duplicate"):
        Vocabulary(np.array([3.0, 3.0]))


def test_extend_keeps_old_codes_and_appends_new_in_first_seen_order():
    vocab = Vocabulary(["a", "b"], name="item")
    bigger = vocab.extend(["c", "a", "d", "c"])
    # old ids keep codes 0 and 1; c and d follow in first-appearance order
    assert bigger.ids.tolist() == ["a", "b", "c", "d"]
    assert bigger.encode(["a", "b"]).tolist() == vocab.encode(["a", "b"]).tolist()
    assert bigger.name == "item"
    # the original is unchanged (vocabularies are values)
    assert vocab.ids.tolist() == ["a", "b"]
    # nothing new: an equal vocabulary
    assert vocab.extend(["b", "a"]) == vocab


def test_from_values_keeps_first_appearance_order():
    vocab = Vocabulary.from_values(["z", "a", "z", "m", "a", 5, "5"])
    assert vocab.ids.tolist() == ["z", "a", "m", "5"]
    assert vocab.encode(["5"]).tolist() == [3]


def test_equality_depends_on_order():
    assert Vocabulary(["a", "b"]) == Vocabulary(["a", "b"])
    assert Vocabulary(["a", "b"]) != Vocabulary(["b", "a"])
    assert Vocabulary(["a"]) != ["a"]


def test_contains_agrees_with_encode_for_whole_floats():
    vocab = Vocabulary(["3"])
    assert vocab.encode([3.0]).tolist() == [0]
    assert 3.0 in vocab


def test_whole_float_in_mixed_list_means_the_integer():
    vocab = Vocabulary(["a", "3"])
    assert vocab.encode(["a", 3.0]).tolist() == [0, 1]
