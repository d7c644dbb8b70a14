"""Each quality rule on its own: kept and removed cases in English and Chinese, exact threshold boundaries,
the script-aware segmentation, and the vectorised n-gram measures against plain-Python references."""

from __future__ import annotations

import itertools
import re
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from puyu.data.document import Document
from puyu.data.filters import (
    AlphaRatioConfig,
    BlocklistConfig,
    BulletLinesConfig,
    DuplicateBlocksConfig,
    DuplicateNgramConfig,
    EllipsisLinesConfig,
    FiltersConfig,
    LengthConfig,
    MeanWordLengthConfig,
    StopWordsConfig,
    SymbolRatioConfig,
    TopNgramConfig,
    build_filters,
)
from puyu.data.filters.blocklist import BlocklistFilter
from puyu.data.filters.gopher import (
    AlphaRatioFilter,
    BulletLinesFilter,
    EllipsisLinesFilter,
    LengthFilter,
    MeanWordLengthFilter,
    StopWordsFilter,
    SymbolRatioFilter,
)
from puyu.data.filters.ngrams import (
    duplicate_ngram_chars,
    next_window,
    top_ngram_chars,
    unit_hashes,
    window_chars,
)
from puyu.data.filters.repetition import (
    DuplicateLinesFilter,
    DuplicateNgramFilter,
    DuplicateParagraphsFilter,
    TopNgramFilter,
    _units_for,
)
from puyu.data.filters.words import HAN_RANGES, KANA_RANGES, count_scripts, is_cjk, segment
from puyu.errors import PuyuError

EN = (
    "The city council voted on Tuesday to extend the downtown tram line by four kilometres, ending a debate "
    "that had dragged on for almost two years. Supporters argued that the extension would connect the "
    "university campus with the central station and take thousands of cars off the road each day."
)
ZH = (
    "本市交通委员会周二宣布，地铁十二号线东延段工程将于明年三月正式开工，预计二〇二八年底建成通车。"
    "东延段全长约十一公里，共设八座车站，建成后将把新城片区与市中心的通勤时间从一个多小时缩短到四十分钟左右。"
)
# A topic-focused Chinese municipal news text: it repeats its key terms ("生活垃圾分类") as such text does.
ZH_TOPICAL = (
    "为深入推进生活垃圾分类工作，市城市管理委员会近日召开全市生活垃圾分类工作推进会。会议指出，"
    "自《生活垃圾管理条例》实施以来，全市生活垃圾分类工作取得了明显成效，居民垃圾分类的知晓率和参与率不断提高，"
    "厨余垃圾分出量比条例实施前增长了近三倍，其他垃圾的清运量持续下降。"
    "会议强调，生活垃圾分类是一项长期性、系统性的工作，既要抓好前端分类投放，也要抓好中端分类收集运输和末端分类处理。"
    "各区要进一步完善生活垃圾分类设施，在居住小区合理设置分类投放点，推动垃圾分类投放点的规范化建设；"
    "要加强对分类收集运输车辆的管理，坚决杜绝混装混运；要加快推进厨余垃圾处理设施建设，提高厨余垃圾的资源化利用水平。"
)


def doc(text: str, **meta: object) -> Document:
    return Document(text, "t:1", "t.jsonl", dict(meta))


# ---- segmentation ------------------------------------------------------------------------------


def test_chinese_is_cut_into_characters_and_keeps_latin_terms_whole() -> None:
    segmented = segment("我用Python写了3个GPU程序。")
    assert segmented.cjk
    assert segmented.units == ["我", "用", "python", "写", "了", "3", "个", "gpu", "程", "序"]
    assert segmented.joiner == ""


def test_english_is_cut_into_lowercased_words_without_punctuation() -> None:
    segmented = segment("Buy now! Buy NOW, - buy now.")
    assert not segmented.cjk
    assert segmented.units == ["buy", "now", "buy", "now", "buy", "now"]


def test_dominant_script_weighs_a_han_character_like_a_word() -> None:
    # 8 Han characters against 7 English words: Chinese, though it has far more Latin letters.
    assert is_cjk("我们使用PyTorch和TensorFlow训练了BERT和GPT以及LLaMA Mistral Qwen模型")
    assert count_scripts("我们使用PyTorch和TensorFlow").other_words == 2
    # An English sentence quoting a Chinese dish stays English.
    assert not is_cjk("Mapo tofu (麻婆豆腐) is one of the best known dishes of Sichuan cuisine.")
    assert not is_cjk("") and not is_cjk("12345 !!!")


@settings(max_examples=100, deadline=None)
@given(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=200) | st.text("本市の々〇𠀋ｱA1 ，、。\ud800", max_size=60)
)
def test_vectorised_script_counts_match_regular_expressions(text: str) -> None:
    han = re.compile("[" + "".join(f"{chr(a)}-{chr(b)}" for a, b in HAN_RANGES) + "]")
    kana = re.compile("[" + "".join(f"{chr(a)}-{chr(b)}" for a, b in KANA_RANGES) + "]")
    counts = count_scripts(text)
    assert (counts.han, counts.kana) == (len(han.findall(text)), len(kana.findall(text)))


# ---- length ------------------------------------------------------------------------------------


def test_length_boundary_in_chinese_characters() -> None:
    rule = LengthFilter(LengthConfig())
    assert rule(doc(ZH[:85])) is None  # 85 non-space characters: exactly the minimum
    assert rule(doc(ZH[:84])) == "too short: 84 chars < 85"
    # Chinese has no word count to fall short of: 100 characters, zero spaces, kept.
    assert rule(doc(ZH[:100])) is None


def test_length_boundary_in_english_words() -> None:
    words = (EN + " " + EN).split()
    rule = LengthFilter(LengthConfig())
    assert rule(doc(" ".join(words[:50]))) is None
    assert rule(doc(" ".join(words[:49]))) == "too few words: 49 < 50"
    # A dash between words is not a word.
    assert rule(doc(" - ".join(words[:49]))) == "too few words: 49 < 50"


def test_length_maximum_and_empty_text() -> None:
    rule = LengthFilter(LengthConfig(min_chars=10, min_words=5, max_chars=90, max_words=15))
    assert rule(doc(ZH)) == "too long: 99 chars > 90"
    assert rule(doc(EN[:99])) == "too many words: 18 > 15"
    assert LengthFilter(LengthConfig())(doc("")) == "too short: 0 chars < 85"
    assert LengthFilter(LengthConfig())(doc(" \n\t " * 50)) == "too short: 0 chars < 85"


# ---- mean word length, symbols, alphabetic share -------------------------------------------------


def test_mean_word_length_boundaries_and_chinese_passes() -> None:
    rule = MeanWordLengthFilter(MeanWordLengthConfig())
    assert rule(doc("The cat sat.")) is None  # punctuation stripped: 3, 3, 3
    assert rule(doc("The cat is.")) == "mean word length too short: 2.667 < 3"
    assert rule(doc("Internationalisation reorganisations.")) == "mean word length too long: 17.500 > 10"
    assert rule(doc(EN)) is None
    # Chinese is one "word" per sentence to a whitespace split; the rule does not apply to it.
    assert rule(doc(ZH)) is None
    assert rule(doc("... --- !!!")) is None


def test_hash_ratio_boundary() -> None:
    words = (EN + " " + EN).split()[:90]
    rule = SymbolRatioFilter(SymbolRatioConfig())
    tags = [f"#tag{i}" for i in range(11)]
    assert rule(doc(" ".join(words + tags[:10]))) is None  # 10 '#' in 100 words
    assert rule(doc(" ".join(words[:89] + tags))) == "too many '#': 0.110 per word > 0.1"


def test_chinese_ellipsis_run_counts_once_per_character_unit() -> None:
    rule = SymbolRatioFilter(SymbolRatioConfig())
    base = "本市交通委员会周二宣布地铁十二号线东延段"  # 20 Han characters
    assert rule(doc(base[:10] + "……" + base[10:] + "……")) is None  # 2 ellipses / 20 units
    assert rule(doc(base[:5] + "……" + base[5:12] + "……" + base[12:] + "……")) == (
        "too many ellipses: 0.150 per word > 0.1"
    )


def test_alpha_ratio_boundary_in_english_words() -> None:
    rule = AlphaRatioFilter(AlphaRatioConfig())
    assert rule(doc("one two three four five six seven eight 9 10")) is None  # 8 of 10
    assert rule(doc("one two three four five six seven 8 9 10")) == "too few alphabetic words: 0.700 < 0.8"
    assert rule(doc("COVID-19 3rd 2024年 ok")) is None  # a letter anywhere in the token counts


def test_alpha_ratio_in_chinese_counts_characters() -> None:
    rule = AlphaRatioFilter(AlphaRatioConfig())
    assert rule(doc(ZH)) is None
    assert rule(doc("限时特惠包邮正品" + "★★★" + "全场")) is None  # 10 of 13
    assert rule(doc("特惠包邮正品现货" + "★★★★★★★★★★★★")) == "too few letters and digits: 0.400 < 0.7"
    assert rule(doc("限时特惠好物" + "★★★★")) == "too few letters and digits: 0.600 < 0.7"
    assert rule(doc("限时特惠好物好" + "★★★")) is None  # exactly 0.7


def test_bullet_lines_boundary() -> None:
    rule = BulletLinesFilter(BulletLinesConfig())
    items = [f"• Item number {i} of the menu" for i in range(9)]
    assert rule(doc("\n".join([*items, "Our opening hours are from nine to five."]))) is None  # 9 of 10
    assert rule(doc("\n".join([*items, "• Contact"]))) == "too many bullet lines: 1.000 > 0.9"
    chinese = ["● 首页", "● 新闻中心", "● 产品展示", "● 联系我们"]
    assert rule(doc("\n\n".join(chinese))) == "too many bullet lines: 1.000 > 0.9"  # blank lines ignored


def test_ellipsis_lines_boundary_english_and_chinese() -> None:
    rule = EllipsisLinesFilter(EllipsisLinesConfig())
    plain = [f"Full sentence number {i}." for i in range(7)]
    teasers = ["Scientists say the new battery could...", "Ten things you did not know…", "他说他本来想……"]
    assert rule(doc("\n".join(plain + teasers))) is None  # 3 of 10
    assert rule(doc("\n".join([*plain[:6], *teasers, "Read more..."]))) == (
        "too many lines ending in ellipsis: 0.400 > 0.3"
    )


# ---- duplicate lines and paragraphs -------------------------------------------------------------


def test_duplicate_lines_by_count_with_whitespace_ignored() -> None:
    rule = DuplicateLinesFilter(DuplicateBlocksConfig())
    lines = [f"Product {i}: a sturdy bag in colour number {i}" for i in range(7)]
    kept = "\n".join([*lines, "Add to cart", " Add to cart", "Add to cart  "])
    assert rule(doc(kept)) is None  # 2 repeats in 10 lines (0.2), 22 of 337 characters
    removed = "\n".join([*lines[:5], "Add to cart", "Add to cart", "Add to cart", "\n", "Add to cart"])
    assert rule(doc(removed)) == "duplicate lines: 0.333 > 0.3"


def test_duplicate_lines_by_characters() -> None:
    rule = DuplicateLinesFilter(DuplicateBlocksConfig())
    long_line = "x" * 200
    text = "\n".join([long_line, *[f"line {i:05d}" for i in range(8)], long_line])
    # 1 repeat in 10 lines, but it holds 200 of the 489 characters.
    assert rule(doc(text)) == "duplicate line chars: 0.409 > 0.2"


def test_duplicate_paragraphs_in_chinese() -> None:
    rule = DuplicateParagraphsFilter(DuplicateBlocksConfig())
    reply = "顶一下！"
    post = "我的经验是不要一味地刷题，\n要把做错的题目整理到错题本上。"
    assert rule(doc("\n\n".join([post, reply, ZH, reply]))) is None  # 1 of 4 paragraphs
    assert rule(doc("\n\n".join([post, reply, ZH, reply, " \n", reply]))) == "duplicate paragraphs: 0.400 > 0.3"
    assert rule(doc(ZH)) is None


# ---- n-grams -----------------------------------------------------------------------------------


def _reference_top(units: list[str], n: int, joiner: str) -> int:
    grams = Counter(tuple(units[i : i + n]) for i in range(len(units) - n + 1))
    if not grams:
        return 0
    top = max(grams.values())
    if top < 2:
        return 0
    return top * max(len(joiner.join(g)) for g, c in grams.items() if c == top)


def _reference_duplicates(units: list[str], n: int, joiner: str) -> int:
    seen: set[tuple[str, ...]] = set()
    covered = [False] * len(units)
    for i in range(len(units) - n + 1):
        gram = tuple(units[i : i + n])
        if gram in seen:
            covered[i : i + n] = [True] * n
        seen.add(gram)
    chars = sum(len(u) for u, c in zip(units, covered, strict=True) if c)
    return chars + len(joiner) * sum(a and b for a, b in itertools.pairwise(covered))


@settings(max_examples=150, deadline=None)
@given(
    units=st.lists(st.sampled_from(["a", "bb", "ccc", "的", "x1"]), min_size=0, max_size=40),
    n=st.integers(1, 6),
    joiner=st.sampled_from(["", " "]),
)
def test_vectorised_ngram_measures_match_plain_python(units: list[str], n: int, joiner: str) -> None:
    hashes = unit_hashes(units)
    windows = hashes
    for size in range(2, n + 1):
        windows = next_window(windows, hashes, size)
    lengths = np.array([len(u) for u in units], dtype=np.int64)
    if len(units) >= n:
        assert top_ngram_chars(windows, window_chars(lengths, n, len(joiner))) == _reference_top(units, n, joiner)
    assert duplicate_ngram_chars(windows, lengths, n, len(joiner)) == _reference_duplicates(units, n, joiner)


def test_chinese_ngram_sizes_scale_by_characters_per_word() -> None:
    chinese, english = segment(ZH), segment(EN)
    assert [_units_for(n, chinese, 1.7) for n in (2, 3, 4, 5, 10)] == [4, 6, 7, 9, 17]
    assert [_units_for(n, english, 1.7) for n in (2, 3, 4, 5, 10)] == [2, 3, 4, 5, 10]


def test_top_ngram_known_value_and_chinese_scaling() -> None:
    rule = TopNgramFilter(TopNgramConfig())
    # "aa bb" twice: 2 x 5 characters of 29.
    assert rule(doc("aa bb aa bb cc dd ee ff gg hh")) == "top 2-gram: 0.345 of chars > 0.2"
    assert rule(doc(EN)) is None and rule(doc(ZH)) is None
    # "限时特惠" (4 characters, the Chinese 2-gram) four times in 32 characters.
    spam = "限时特惠全场包邮限时特惠正品保证限时特惠品质可靠限时特惠欢迎选购"
    assert rule(doc(spam)) == f"top 2-gram: {16 / len(spam):.3f} of chars > 0.2"


def test_duplicate_ngram_known_value() -> None:
    rule = DuplicateNgramFilter(DuplicateNgramConfig())
    sentence = "the quick brown fox jumps over the lazy dog near the river bank"
    text = sentence + " and then " + sentence
    # The whole second sentence (63 characters) repeats the first: 63 of 136.
    assert rule(doc(text)) == f"duplicate 5-grams: {len(sentence) / len(text):.3f} of chars > 0.15"
    assert rule(doc(EN + " " + ZH)) is None


def test_topical_chinese_news_passes_only_with_scaled_ngrams() -> None:
    """Why character n-grams are scaled: unscaled, Gopher's thresholds remove ordinary Chinese news."""
    assert DuplicateNgramFilter(DuplicateNgramConfig())(doc(ZH_TOPICAL)) is None
    assert TopNgramFilter(TopNgramConfig())(doc(ZH_TOPICAL)) is None
    unscaled = DuplicateNgramFilter(DuplicateNgramConfig(cjk_chars_per_word=1.0))
    assert unscaled(doc(ZH_TOPICAL)) is not None


# ---- stop words --------------------------------------------------------------------------------


def test_stop_words_boundary_and_whole_words_in_english() -> None:
    rule = StopWordsFilter(StopWordsConfig())
    assert rule(doc("Cheap flights Paris London Rome - THE lowest prices AND free cancellation", language="en")) is None
    assert rule(doc("Cheap flights Paris London Rome, lowest prices and free cancellation", language="en")) == (
        "too few stop words: en 1 < 2"
    )
    # "together", "other", "theory", "bethe" contain stop words but are not stop words.
    assert rule(doc("together other theory bethe tohave andthe", language="en")) == "too few stop words: en 0 < 2"


def test_stop_words_in_chinese_and_languages_without_a_list() -> None:
    rule = StopWordsFilter(StopWordsConfig())
    assert rule(doc(ZH, language="zh")) is None
    assert rule(doc("手机 华为手机 苹果手机 小米手机 手机壳 手机膜 充电器 数据线 蓝牙耳机", language="zh")) == (
        "too few stop words: zh 0 < 2"
    )
    assert rule(doc("手机壳 新款的手机", language="zh")) == "too few stop words: zh 1 < 2"
    # German has no list: the language filter decides about it, not this rule.
    assert rule(doc("Günstige Flüge Paris London Rom", language="de")) is None
    assert rule(doc("Cheap flights Paris London Rome", language="en-GB")) == "too few stop words: en 0 < 2"


# ---- blocklist ---------------------------------------------------------------------------------


def test_blocklist_matches_whole_english_words_case_insensitively() -> None:
    rule = BlocklistFilter(BlocklistConfig())
    assert rule(doc("Click here for FREE Porn. Updated daily.")) == "blocked terms: more than 0 (porn)"
    assert rule(doc("A history of pornography laws in the nineteenth century.")) is None
    assert rule(doc(EN)) is None


def test_blocklist_matches_chinese_as_substrings_and_english_next_to_chinese() -> None:
    rule = BlocklistFilter(BlocklistConfig())
    assert rule(doc("本站提供最新成人视频免费观看")) == "blocked terms: more than 0 (成人视频)"
    assert rule(doc("免费porn网站大全")) == "blocked terms: more than 0 (porn)"
    assert rule(doc(ZH)) is None


def test_blocklist_max_hits_and_user_file(tmp_path) -> None:
    terms = tmp_path / "blocked.txt"
    terms.write_text("# project list\n\nacme corp\n刷单\n", encoding="utf-8")
    rule = BlocklistFilter(BlocklistConfig(words=[], file=str(terms), max_hits=1))
    assert rule(doc("Acme Corp announced results.")) is None
    assert rule(doc("ACME corp and acme corp, 刷单返利")) == "blocked terms: more than 1 (acme corp)"
    assert rule(doc("acmecorp acme corporation")) is None
    assert BlocklistFilter(BlocklistConfig(words=[]))(doc("anything")) is None


def test_blocklist_file_errors_are_user_errors(tmp_path) -> None:
    with pytest.raises(PuyuError, match=r"missing\.txt: cannot read the blocklist"):
        BlocklistFilter(BlocklistConfig(file=str(tmp_path / "missing.txt")))
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(PuyuError, match=r"latin1\.txt: blocklist is not UTF-8 text \(invalid utf-8 at byte 3\)"):
        BlocklistFilter(BlocklistConfig(file=str(bad)))


# ---- robustness --------------------------------------------------------------------------------

ALL_FILTERS = build_filters(FiltersConfig())


@pytest.mark.parametrize(
    "text",
    [
        "",
        " \n\t\r ",
        "\x00" * 200,
        "\ud800 lone surrogate \udfff " * 20,
        "。" * 300,
        "#" * 500,
        "..." * 200,
        "a" * 100_000,
        "\n" * 1000 + "word",
        "😀🎉" * 200,
        "ｆｕｌｌｗｉｄｔｈ　ｔｅｘｔ　" * 30,
    ],
    ids=lambda t: repr(t[:12]),
)
def test_odd_text_never_raises(text: str) -> None:
    for rule in ALL_FILTERS:
        result = rule(doc(text))
        assert result is None or (isinstance(result, str) and result)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=400))
def test_any_text_gets_a_verdict_from_every_filter(text: str) -> None:
    document = doc(text)
    for rule in ALL_FILTERS:
        result = rule(document)
        assert result is None or (isinstance(result, str) and ":" in result)
