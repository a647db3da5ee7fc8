"""SimHash fingerprints and the permuted-block near-duplicate index."""

from __future__ import annotations

import random
import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crawler.extract.neardup import NearDupIndex, _tokens, block_keys, format_simhash, hamming, simhash64

_RNG = random.Random(20261128)
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_VOCAB = ["".join(_RNG.choice(_LETTERS) for _ in range(_RNG.randint(2, 10))) for _ in range(4000)]


def _article(rng: random.Random, words: int) -> str:
    sentences = []
    while words > 0:
        n = min(words, rng.randint(6, 18))
        words -= n
        sentences.append(" ".join(rng.choice(_VOCAB) for _ in range(n)).capitalize() + ".")
    return " ".join(sentences)


def test_fixed_fingerprint_literal() -> None:
    # A change of hashing, seed, shingling or bit order must break this.
    text = "The quick brown fox jumps over the lazy dog near the riverbank at dawn."
    assert simhash64(text) == 0x3BB211005C86A103
    assert format_simhash(simhash64(text)) == "3bb211005c86a103"


def test_stable_across_processes() -> None:
    text = _article(random.Random(5), 300)
    code = "import sys; from crawler.extract.neardup import simhash64; print(simhash64(sys.stdin.read()))"
    out = subprocess.run(
        [sys.executable, "-c", code], input=text, capture_output=True, text=True, check=True, timeout=60
    )
    assert int(out.stdout) == simhash64(text)


def test_timestamp_only_difference_is_near_and_found() -> None:
    body = _article(random.Random(1), 400)
    a = f"{body} Generated at 2026-11-28 02:13:37"
    b = f"{body} Generated at 2026-11-28 03:14:15"
    assert hamming(simhash64(a), simhash64(b)) <= 3
    index = NearDupIndex(3)
    index.add(simhash64(a), "http://a.test/1")
    assert index.find(simhash64(b)) == "http://a.test/1"


def test_one_word_edit_in_long_article_is_near() -> None:
    words = _article(random.Random(2), 2000).split()
    edited = list(words)
    edited[1000] = "replacementword"
    assert hamming(simhash64(" ".join(words)), simhash64(" ".join(edited))) <= 3


def test_unrelated_pages_are_far() -> None:
    rng = random.Random(3)
    a, b = _article(rng, 400), _article(rng, 400)
    assert hamming(simhash64(a), simhash64(b)) >= 12
    index = NearDupIndex(3)
    index.add(simhash64(a), "http://a.test/a")
    assert index.find(simhash64(b)) is None


def test_case_punctuation_and_whitespace_do_not_matter() -> None:
    assert simhash64("Hello, World!  How are you?") == simhash64("hello world how\nare you")


def test_defined_values_for_empty_and_short_text() -> None:
    assert simhash64("") == 0
    assert simhash64("  ,.;  ") == 0
    one, two = simhash64("hello"), simhash64("hello world")
    assert one != 0 and two != 0 and one != two
    # Numeric-only text falls back to digits so such pages do not all collide.
    assert simhash64("404") != simhash64("500") and simhash64("404") != 0
    assert 0 <= simhash64("x" * 10) < 2**64


def test_non_ascii_text() -> None:
    a = _article(random.Random(4), 300).replace("a", "ä")
    assert simhash64(a) == simhash64(a.upper())
    assert simhash64("Привет мир как дела") != simhash64("совсем другой текст тут")


_TEXT = st.text(
    alphabet=st.sampled_from([*"abcXYZ019_ .,-\n\t'’\xa0éДж中٣", "\u0130", "\u00df"]),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(_TEXT)
def test_fast_tokenizer_matches_regex_definition(text: str) -> None:
    low = text.lower()
    expected = re.findall(r"[^\W\d]+", low)
    if len(expected) < 3:
        expected = re.findall(r"\w+", low)
    assert _tokens(text) == [t.encode() for t in expected]


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_any_text_gives_a_64_bit_value(text: str) -> None:
    fp = simhash64(text)
    assert 0 <= fp < 2**64
    assert len(format_simhash(fp)) == 16


def test_hamming_and_format() -> None:
    assert hamming(0, 0) == 0
    assert hamming(0, 2**64 - 1) == 64
    assert hamming(0b1011, 0b0001) == 2
    assert format_simhash(0xAB) == "00000000000000ab"


@pytest.mark.parametrize("k", [0, 1, 3, 6, 63])
def test_block_keys_cover_all_bits_and_pigeonhole(k: int) -> None:
    rng = random.Random(k)
    keys = block_keys(2**64 - 1, k)
    assert [i for i, _ in keys] == list(range(k + 1))
    assert sum(v.bit_count() for _, v in keys) == 64
    for _ in range(200):
        a = rng.getrandbits(64)
        b = a
        for bit in rng.sample(range(64), k):
            b ^= 1 << bit
        assert set(block_keys(a, k)) & set(block_keys(b, k))


def test_block_keys_rejects_bad_distance() -> None:
    with pytest.raises(ValueError):
        block_keys(0, 64)
    with pytest.raises(ValueError):
        NearDupIndex(-1)


def test_index_matches_brute_force() -> None:
    rng = random.Random(7)
    k = 3
    stored: list[int] = []
    for _ in range(2500):
        stored.append(rng.getrandbits(64))
    index = NearDupIndex(k)
    for i, fp in enumerate(stored):
        index.add(fp, f"u{i}")
    assert len(index) == len(stored)

    queries = [rng.getrandbits(64) for _ in range(1000)]
    for _ in range(2000):  # perturbations at distance 0..6 give both near and far-but-close queries
        q = rng.choice(stored)
        for bit in rng.sample(range(64), rng.randint(0, 6)):
            q ^= 1 << bit
        queries.append(q)

    arr = np.array(stored, dtype=np.uint64)
    near = far = 0
    for q in queries:
        dists = np.bitwise_count(arr ^ np.uint64(q))
        best = int(dists.min())
        found = index.find(q)
        if best <= k:
            near += 1
            assert found == f"u{int(np.argmax(dists == best))}"
        else:
            far += 1
            assert found is None
    assert near > 500 and far > 1000


def test_index_duplicates_return_first_key() -> None:
    index = NearDupIndex()
    index.add(42, "first")
    index.add(42, "second")
    index.add(43, "third")
    assert index.find(42) == "first"
    assert index.find(43) == "third"
    assert index.find(42 ^ (1 << 63)) == "first"
    assert NearDupIndex().find(42) is None
