"""Cleaning: Unicode repair, normalization, white space and boilerplate lines, in English and Chinese."""

from __future__ import annotations

from collections import Counter

import ftfy
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from puyu.data.cleaning import _FTFY, CleanConfig, Cleaner, _fix_unicode, clean_text, is_boilerplate
from puyu.data.document import Document, Tally
from puyu.errors import PuyuError

DEFAULT = CleanConfig()

CLEAN_TEXTS = [
    "The committee met on Tuesday.\n\nIt voted “yes” on the ‘new’ plan — 7 to 2.",
    "你好，世界！这是一个测试：（括号）、“引号”；还有？\n\n第二段。",
    "def f(x):\n    if x:\n\t\treturn x\n    return 0",
    "Emoji family 👨\u200d👩\u200d👧 and the ﬁ ligature and ½ stay; ＡＢＣ too.",
    "　　这是用全角空格缩进的中文段落。",
    "Tab\tseparated\tvalues\n1\t2\t3",
]


@pytest.mark.parametrize("text", CLEAN_TEXTS)
def test_clean_text_is_left_exactly_as_it_is(text: str) -> None:
    assert clean_text(text, DEFAULT) == (text, Counter())


@pytest.mark.parametrize(
    ("broken", "fixed"),
    [
        ("Ã©tÃ© Ã  Paris", "été à Paris"),
        ("你好，世界。".encode().decode("cp1252", errors="replace"), "你好，世界。"),
        ("中文内容".encode().decode("latin-1"), "中文内容"),
        ("AT&amp;T &lt;3", "AT&T <3"),
        ("\x1b[31mred\x1b[0m text", "red text"),
    ],
)
def test_broken_unicode_is_repaired(broken: str, fixed: str) -> None:
    text, counts = clean_text(broken, DEFAULT)
    assert text == fixed
    assert counts["unicode_fixed"] == 1


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=60) | st.sampled_from(["AT&amp;T", "a\x1b[1mb"]))
def test_ascii_shortcut_agrees_with_ftfy(text: str) -> None:
    assert _fix_unicode(text) == ftfy.fix_text(text, _FTFY)


def test_normal_forms() -> None:
    assert clean_text("Cafe\u0301", DEFAULT) == ("Café", Counter(normalized=1))
    # NFC keeps full-width punctuation and ligatures; NFKC folds them.
    assert clean_text("ﬁ ＡＢＣ，好。", DEFAULT)[0] == "ﬁ ＡＢＣ，好。"
    assert clean_text("ﬁ ＡＢＣ，好。", CleanConfig(normalization="NFKC"))[0] == "fi ABC,好。"
    assert clean_text("Cafe\u0301", CleanConfig(normalization=None))[0] == "Cafe\u0301"
    with pytest.raises(PuyuError, match="normalization 'NFX'"):
        CleanConfig(normalization="NFX")


def test_whitespace_is_tidied() -> None:
    text = (
        "\n\n  indented  line   with   runs  \t\r\n"
        "zero\u200bwidth\u00a0nbsp\x07bell\x00\r\n\n\n\n\n"
        "para\u2028two\u3000\u3000\n\n"
    )
    config = CleanConfig(fix_unicode=False)
    cleaned, counts = clean_text(text, config)
    assert cleaned == "  indented line with runs\nzerowidth nbspbell\n\npara\ntwo"
    assert counts == Counter(whitespace_fixed=1)
    assert clean_text("中文  段落\n\n\n英文", config)[0] == "中文 段落\n\n英文"
    assert clean_text("a  b\n\n\nc", CleanConfig(normalize_whitespace=False))[0] == "a  b\n\n\nc"


BOILERPLATE_LINES = [
    "We use cookies to improve your experience.",
    "Accept all cookies",
    "© 2024 Example Inc. All rights reserved.",
    "Copyright © 2019 Foo Media",
    "(c) 2021 Bar Ltd",
    "Share on Facebook",
    "Share this:",
    "Follow us on Twitter",
    "Read more »",
    "Continue reading →",
    "Click here to download the report",
    "Subscribe to our newsletter",
    "JavaScript is disabled in your browser.",
    "Please enable JavaScript to view the comments",
    "Page 3 of 10",
    "1 2 3 … 10 Next",
    "« Prev 1 2 3 Next »",
    "Home | About | Contact | Privacy Policy",
    "Home > News > World",
    "Skip to main content",
    "Next post: How to bake bread",
    "版权所有 © 2024 某某公司",
    "未经许可，不得转载",
    "转载请注明出处",
    "点击这里下载",
    "分享到：",
    "上一篇：人工智能的未来",
    "下一篇",
    "扫码关注我们",
    "长按识别二维码关注",
    "免责声明：本文仅代表作者本人观点。",
    "相关阅读",
    "返回顶部",
    "阅读原文",
    "（责任编辑：张三）",
    "当前位置：首页 > 新闻",
    "首页 | 关于我们 | 联系我们",
    "第3页 共10页",
    "上一页 1 2 3 下一页",
    "本站使用Cookie以改善体验",
]

PROSE_LINES = [
    "The copyright law of 1976 changed how libraries lend books.",
    "Copyright law is complicated.",
    "She said she would share this with her sister.",
    "He read more books than anyone.",
    "Cookies are baked at 180 degrees for twelve minutes.",
    "Home is where the heart is.",
    "About us: we are a small team of researchers.",
    "In 2024 the price rose from 1 2 to 3.",
    "2 > 1",
    "1 2 3",
    "| Name | Age |",
    "Next, we add the flour.",
    "Previous work has shown that attention helps.",
    "根据法律规定，作品的版权所有人享有复制权。",
    "他把照片分享到朋友圈，引来很多点赞。",
    "上一篇文章我们讨论了注意力机制。",
    "点击率是衡量广告效果的指标之一。",
    "首页设计得很漂亮。",
    "免责声明是一种常见的法律文书。",
    "关于我们的故事，要从十年前说起。",
]


@pytest.mark.parametrize("line", BOILERPLATE_LINES)
def test_boilerplate_lines_are_dropped(line: str) -> None:
    assert is_boilerplate(line, DEFAULT)
    assert not is_boilerplate(line, CleanConfig(remove_boilerplate=False))


@pytest.mark.parametrize("line", PROSE_LINES)
def test_prose_lines_are_kept(line: str) -> None:
    assert not is_boilerplate(line, DEFAULT)


def test_long_lines_are_never_boilerplate() -> None:
    paragraph = (
        "All rights reserved is a phrase that originated in copyright law as part of copyright notices; "
        "it indicated that the copyright holder reserved, or held for their own use, all the rights provided "
        "by copyright law. © 1910 was a common form of the notice in that period."
    )
    assert len(paragraph) > 200
    assert not is_boilerplate(paragraph, DEFAULT)
    assert is_boilerplate(paragraph, CleanConfig(max_boilerplate_line_chars=1000))


def test_document_with_boilerplate() -> None:
    text = (
        "Home | News | Contact\n"
        "Library to open later\n\n"
        "The committee voted to extend opening hours.\n\n"
        "Read more\n\n"
        "Staff costs will rise slightly.\n"
        "Share on Twitter\n\n"
        "© 2024 City News. All rights reserved."
    )
    cleaned, counts = clean_text(text, DEFAULT)
    assert cleaned == (
        "Library to open later\n\nThe committee voted to extend opening hours.\n\nStaff costs will rise slightly."
    )
    assert counts == Counter(boilerplate_lines=4)

    zh = "首页 > 新闻中心 > 正文\n北京今天晴。\n\n分享到：\n\n气温二十度。\n上一篇：明天有雨\n版权所有 © 2024 某报社"
    assert clean_text(zh, DEFAULT) == ("北京今天晴。\n\n气温二十度。", Counter(boilerplate_lines=4))


def test_user_patterns() -> None:
    config = CleanConfig(boilerplate_patterns=[r"^Sponsored by ", r"广告"])
    text = "Sponsored by ACME\nReal text.\n这是广告\n正文。"
    assert clean_text(text, config) == ("Real text.\n正文。", Counter(boilerplate_lines=2))
    # The built-in patterns off, the user's still apply.
    config = CleanConfig(remove_boilerplate=False, boilerplate_patterns=[r"^Sponsored by "])
    assert clean_text("Sponsored by ACME\nRead more", config)[0] == "Read more"
    with pytest.raises(PuyuError, match=r"boilerplate pattern '\(unclosed'"):
        CleanConfig(boilerplate_patterns=["(unclosed"])


def test_cleaner_counts_in_the_tally() -> None:
    tally = Tally()
    cleaner = Cleaner(DEFAULT)
    doc = Document(text="Ã©tÃ©  chaud\nRead more\nClick here to subscribe", id="a:1", source="a", meta={"k": 1})
    out = cleaner(doc, tally)
    assert (out.text, out.id, out.source, out.meta) == ("été chaud", "a:1", "a", {"k": 1})
    assert doc.text.startswith("Ã©")  # the input document is not changed
    same = cleaner(Document(text="已经干净的文本。", id="b:1", source="b"), tally)
    assert same.text == "已经干净的文本。"
    assert tally.docs == Counter(
        {
            "clean/unicode_fixed": 1,
            "clean/whitespace_fixed": 1,
            "clean/boilerplate_lines": 2,
            "clean/changed": 1,
            "clean/ok": 2,
        }
    )
    assert tally.bytes["clean/ok"] == len("été chaud".encode()) + len("已经干净的文本。".encode())


_ALPHABET = st.sampled_from([*"ab 中文，。\t\n\r\u00a0\u200b\u3000©éÃ©&amp;<>12", "Read more", "分享到：", "e\u0301"])


@settings(max_examples=150, deadline=None)
@given(st.lists(_ALPHABET, max_size=40).map("".join))
@example("Ã\u200b\u00a0a")  # ftfy's mojibake repair only sees "Ã " once the zero-width space is gone
@example("Ãe\u0301Ãe\u0301")  # ... and "Ãé" only once NFC has composed the accent
def test_cleaning_twice_changes_nothing(text: str) -> None:
    once, _ = clean_text(text, DEFAULT)
    assert clean_text(once, DEFAULT) == (once, Counter())
