"""Splitting added tokens out of text before the backend tokenizer runs."""

from __future__ import annotations

from puyu.tokenizer.special_tokens import ADDED, LITERAL, TEXT, AddedToken, AddedTokenSplitter


def _parts(splitter: AddedTokenSplitter, text: str) -> list[tuple[str, str, int | None]]:
    segments = splitter.split(text)
    # Segments cover the text in order.
    assert "".join(text[s.start : s.end] for s in segments) == text
    return [(text[s.start : s.end], s.kind, s.token_id) for s in segments]


def test_longest_match_first() -> None:
    splitter = AddedTokenSplitter([AddedToken("<|im", 5), AddedToken("<|im_start|>", 7)])
    assert _parts(splitter, "a<|im_start|>b<|imx") == [
        ("a", TEXT, None),
        ("<|im_start|>", ADDED, 7),
        ("b", TEXT, None),
        ("<|im", ADDED, 5),
        ("x", TEXT, None),
    ]


def test_no_tokens_and_empty_text() -> None:
    assert AddedTokenSplitter([]).split("abc")[0].kind == TEXT
    assert AddedTokenSplitter([AddedToken("<s>", 1)]).split("") == []
    assert _parts(AddedTokenSplitter([AddedToken("<s>", 1)]), "<s><s>") == [("<s>", ADDED, 1), ("<s>", ADDED, 1)]


def test_lstrip_rstrip() -> None:
    splitter = AddedTokenSplitter([AddedToken("<mask>", 3, lstrip=True), AddedToken("<sep>", 4, rstrip=True)])
    assert _parts(splitter, "a  <mask> b<sep> \n c") == [
        ("a", TEXT, None),
        ("  <mask>", ADDED, 3),
        (" b", TEXT, None),
        ("<sep> \n ", ADDED, 4),
        ("c", TEXT, None),
    ]


def test_lstrip_does_not_reach_into_previous_token() -> None:
    splitter = AddedTokenSplitter([AddedToken("<a>", 1, rstrip=True), AddedToken("<b>", 2, lstrip=True)])
    assert _parts(splitter, "<a>  <b>") == [("<a>  ", ADDED, 1), ("<b>", ADDED, 2)]


def test_single_word() -> None:
    splitter = AddedTokenSplitter([AddedToken("cat", 9, single_word=True)])
    assert _parts(splitter, "cat concat cat.") == [
        ("cat", ADDED, 9),
        (" concat ", TEXT, None),
        ("cat", ADDED, 9),
        (".", TEXT, None),
    ]


def test_literals() -> None:
    splitter = AddedTokenSplitter([AddedToken("<x>", 1)], literals=["[P]", "<x>"])
    # An added token with the same content as a literal wins.
    assert _parts(splitter, "a[P]<x>") == [("a", TEXT, None), ("[P]", LITERAL, None), ("<x>", ADDED, 1)]


def test_config_entry_round_trip() -> None:
    entry = {
        "content": "<s>",
        "lstrip": False,
        "normalized": False,
        "rstrip": True,
        "single_word": False,
        "special": True,
    }
    token = AddedToken.from_config(1, entry)
    assert token == AddedToken("<s>", 1, rstrip=True)
    assert token.to_config() == entry
    assert AddedToken.from_config(4, "<t>") == AddedToken("<t>", 4)
