"""Text cleaning: repair broken Unicode, normalize, tidy white space, and drop boilerplate lines.

Clean text passes through unchanged, and cleaning is idempotent: a second run changes nothing.
Boilerplate is removed a whole line at a time and only from short lines (cookie banners, "All rights
reserved", share buttons, pagers, navigation bars and their Chinese counterparts): a paragraph that
happens to mention copyright stays.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

import ftfy

from ..errors import PuyuError, one_line
from .document import Document, Tally


@dataclass
class CleanConfig:
    """What the cleaner does; each step can be turned off.

    Args:
        fix_unicode: repair mojibake, HTML entities and terminal escapes with ftfy. Quotes, ligatures and
            full-width characters are left alone (Chinese text uses full-width punctuation).
        normalization: Unicode normal form ("NFC", "NFKC", "NFD", "NFKD") or None. NFKC is not the
            default because it rewrites full-width punctuation (，→ ,) in Chinese text.
        normalize_whitespace: strip trailing white space of lines, collapse runs of blank lines to one and
            runs of spaces and tabs inside a line to one space (leading indentation is kept, so code and
            verse keep their shape), turn exotic spaces into plain ones, and remove invisible and control
            characters except newline and tab.
        remove_boilerplate: drop short lines matching the built-in boilerplate patterns (English and Chinese).
        boilerplate_patterns: extra regular expressions; a short line matching any of them is dropped.
        max_boilerplate_line_chars: only lines shorter than this (after stripping) can be dropped as boilerplate.
    """

    fix_unicode: bool = True
    normalization: str | None = "NFC"
    normalize_whitespace: bool = True
    remove_boilerplate: bool = True
    boilerplate_patterns: list[str] = field(default_factory=list)
    max_boilerplate_line_chars: int = 200

    def __post_init__(self) -> None:
        if self.normalization not in (None, "NFC", "NFKC", "NFD", "NFKD"):
            raise PuyuError(f"normalization {self.normalization!r}: use NFC, NFKC, NFD, NFKD or none")
        _user_patterns(tuple(self.boilerplate_patterns))  # reject a bad regex now, not at the first document


# Everything except the changes that alter correct text: curly quotes, ligatures, full-width forms.
_FTFY = ftfy.TextFixerConfig(
    fix_latin_ligatures=False, fix_character_width=False, uncurl_quotes=False, normalization=None, explain=False
)

# Plain ASCII text gives ftfy nothing to repair unless it holds an HTML entity or a control character;
# skipping ftfy for the rest (most English text) halves the cleaning time.
_ASCII_FTFY_WORK = re.compile(r"[&\x00-\x08\x0b-\x1f\x7f]")


def _fix_unicode(text: str) -> str:
    if text.isascii() and not _ASCII_FTFY_WORK.search(text):
        return text
    return ftfy.fix_text(text, _FTFY)


# ---------------------------------------------------------------- white space

_LINE_BREAKS = re.compile(r"\r\n?|[\v\f\x85\u2028\u2029]")
# Spaces of other widths become a plain space; the ideographic space U+3000 stays (Chinese indentation).
_ODD_SPACES = re.compile(r"[\u00a0\u1680\u2000-\u200a\u202f\u205f]")
# Control characters (newline and tab kept) and invisible format characters. Zero-width joiners stay:
# they are part of emoji sequences and of Persian and Indic spelling.
_INVISIBLE = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\u00ad\u180e\u200b\u2060\ufeff]")
_TRAILING = re.compile(r"[^\S\n]+$", re.MULTILINE)
_INNER_RUN = re.compile(r"(?<=\S)[ \t]{2,}")
_BLANK_LINES = re.compile(r"\n{3,}")


def _tidy_whitespace(text: str) -> str:
    text = _LINE_BREAKS.sub("\n", text)
    text = _ODD_SPACES.sub(" ", text)
    text = _INVISIBLE.sub("", text)
    text = _TRAILING.sub("", text)
    text = _INNER_RUN.sub(" ", text)
    return _BLANK_LINES.sub("\n\n", text).strip("\n")


# ---------------------------------------------------------------- boilerplate

# Patterns matched at the start of a line, after any leading punctuation or bullets.
_AT_LINE_START = [
    r"copyright\s*(©|\(c\)|\d{4})",
    r"share (this|on|via)\b",
    r"(read|learn|see|view|show|load) more\W*$",
    r"continue reading\b",
    r"read (the )?full (story|article|post|text)\W*$",
    r"(leave|post) a (comment|reply)\W*$",
    r"(log ?in|sign ?in) to (comment|reply|post|continue)\b",
    r"(related (posts|articles|stories)|you may also like|recommended for you)\W*$",
    r"(advertisement|sponsored content)\W*$",
    r"page\s+\d+\s*(of|/)\s*\d+\W*$",
    r"(previous|prev|next|older|newer) (page|post|article|story|entry)\b",
    r"(skip to (main )?content|skip navigation|back to top|scroll to top|jump to navigation)\W*$",
    r"you are here\s*:",
    r"(home|homepage|首页|主页|网站首页)(\s*[>›»]\s*[^>›»]{1,40}){1,6}$",  # breadcrumbs
    r"分享到\s*([:：]|$)",
    r"(上一篇|下一篇|上一页|下一页|上一章|下一章)\s*([:：]|$)",
    r"免责声明\s*([:：]|$)",
    r"(相关阅读|相关文章|相关推荐|推荐阅读|热门推荐|猜你喜欢|延伸阅读|热门文章|精彩推荐)\W*$",
    r"(返回|回到)(顶部|首页|目录|列表)\W*$",
    r"(阅读全文|查看全文|展开全文|阅读原文|查看原文|查看更多|加载更多|点击查看更多)\W*$",
    r"[(（【\[]?\s*责任编辑\s*[:：]",
    r"(当前位置|您的位置|你的位置|您现在的位置)\s*[:：]",
    r"第\s*\d+\s*页\s*[/，,]?\s*(共\s*\d+\s*页)?\W*$",
    r"共\s*\d+\s*页\W*$",
    r"(发表评论|我要评论|网友评论|登录后发表评论)\W*$",
]
# Patterns matched anywhere in a line, each with a word the line must hold (lower-cased): checking for
# the word first is far cheaper than searching every line with every pattern.
_ANYWHERE = [
    ("cookie", r"\bwe use cookies\b"),
    ("cookie", r"\b(this|our) (web ?)?site uses cookies\b"),
    ("cookie", r"\b(accept|allow|reject|decline|manage) (all )?cookies\b"),
    ("cookie", r"\bcookie (policy|settings|preferences|consent|notice)\b"),
    ("cookie", r"(本站|本网站|我们)使用\s*cookie"),
    ("by ", r"\bby (continuing|using|browsing)\b.{0,60}\byou (agree|consent|accept)\b"),
    ("rights reserved", r"\ball rights reserved\b"),
    ("©", r"©\s*(\d{4}|copyright\b)|\b\d{4}\s*©"),
    ("(c)", r"\(c\)\s*(\d{4}|copyright\b)"),
    ("share", r"\bshare (on|to|via) (facebook|twitter|linkedin|pinterest|reddit|whatsapp|weibo|wechat)\b"),
    ("follow us", r"\bfollow us on\b"),
    ("click here", r"\bclick here\b"),
    ("newsletter", r"\b(subscribe|sign up)\b.{0,30}\bnewsletters?\b|\bnewsletter sign-?up\b"),
    ("unsubscribe", r"\bunsubscribe\b"),
    ("javascript", r"\bjavascript\b.{0,30}\b(disabled|required|not enabled|turned off)\b"),
    ("javascript", r"\b(enable|turn on)\b.{0,10}\bjavascript\b"),
    ("javascript", r"(请|需要)(启用|开启|打开|允许)\s*javascript"),
    ("browser", r"\byour browser (does not|doesn't) support\b"),
    ("版权", r"版权所有(?![人者权方])|版权归.{0,20}所有"),
    ("未经", r"未经.{0,12}(许可|授权|允许|同意).{0,12}(不得|禁止|严禁).{0,6}(转载|复制|使用)"),
    ("转载", r"转载请注明(出处|来源|作者)"),
    ("点击", r"点击(这里|此处)"),
    ("二维码", r"扫一?扫?(下方|上方)?二维码|长按(识别)?(图中)?二维码"),
    ("扫码关注", r"扫码关注"),
    ("公众号", r"关注(我们的)?(微信)?公众号"),
    ("浏览器", r"浏览器(不支持|版本过低)"),
    ("订阅", r"订阅(我们的)?(新闻|电子)?(简报|邮件|通讯)"),
]
_START = re.compile(r"\W*(?:" + "|".join(f"(?:{p})" for p in _AT_LINE_START) + ")", re.IGNORECASE)
_BY_KEYWORD: dict[str, re.Pattern[str]] = {
    keyword: re.compile("|".join(f"(?:{p})" for k, p in _ANYWHERE if k == keyword), re.IGNORECASE)
    for keyword in dict.fromkeys(k for k, _ in _ANYWHERE)
}

# Navigation bars: a line made only of two or more menu entries ("Home | About | Contact", "首页 > 新闻中心").
_NAV_EN = (
    "home|homepage|about|about us|contact|contact us|log ?in|log ?out|sign ?in|sign ?up|sign ?out|register|"
    "subscribe|search|menu|site ?map|privacy|privacy policy|terms|terms of use|terms of service|"
    "terms and conditions|cookie policy|cookies|help|faqs?|support|careers|jobs|blog|news|advertise|press|"
    "legal|accessibility|share|tweet|email|print|facebook|twitter|linkedin|instagram|youtube|pinterest|reddit|"
    "whatsapp|rss|next|previous|prev|back|top|back to top|archives?|categories|tags|shop|cart|my account|account|"
    "newsletter|events|donate|feedback"
)
_NAV_ZH = (
    "首页|主页|网站首页|关于我们|联系我们|联系方式|网站地图|登录|注册|退出|帮助|帮助中心|隐私政策|隐私条款|"
    "用户协议|服务条款|法律声明|免责声明|返回顶部|意见反馈|加入我们|招聘信息|广告服务|合作伙伴|友情链接|设为首页|"
    "加入收藏|新闻中心|产品中心|客户服务|在线客服|微博|微信|手机版|搜索|分享|订阅|更多|正文"
)
_NAV_SEPARATORS = r"[\s|·•»›>/\-–—:,、｜丨]*"
_NAVIGATION = re.compile(
    rf"^{_NAV_SEPARATORS}(?:(?:(?:{_NAV_EN})\b|(?:{_NAV_ZH})){_NAV_SEPARATORS}){{2,}}$", re.IGNORECASE
)

# Pagers: "« 1 2 3 … 10 Next »", "上一页 1 2 3 下一页".
_PAGER_TOKEN = re.compile(
    r"\d{1,4}|…|\.\.\.|[«»‹›<>←→]+|\b(?:next|prev|previous|first|last)\b|上一页|下一页|首页|尾页|末页", re.IGNORECASE
)
_PAGER_FILLER = re.compile(r"[\s|·•,\[\]()]*")


# Cheap first tests that reject almost all other lines: two digits, and only characters a pager holds.
_TWO_DIGITS = re.compile(r"\d\D*\d")
_PAGER_CHARACTERS = re.compile(r"[\d\s|·•,\[\]().…«»‹›<>←→A-Za-z上下一页首尾末]+")


def _is_pager(line: str) -> bool:
    if not (_TWO_DIGITS.search(line) and _PAGER_CHARACTERS.fullmatch(line)):
        return False
    if not _PAGER_FILLER.fullmatch(_PAGER_TOKEN.sub(" ", line)):
        return False
    tokens = _PAGER_TOKEN.findall(line)
    numbers = sum(token.isdigit() for token in tokens)
    arrows = sum(token[0] in "«»‹›<>←→" for token in tokens)
    words = len(tokens) - numbers - arrows
    return numbers >= 2 and (words > 0 or arrows >= 2)


def _builtin_boilerplate(line: str) -> bool:
    if _START.match(line) or _NAVIGATION.match(line):
        return True
    lower = line.lower()
    for keyword, pattern in _BY_KEYWORD.items():
        if keyword in lower and pattern.search(line):
            return True
    return _is_pager(line)


@functools.lru_cache(maxsize=64)
def _user_patterns(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise PuyuError(f"boilerplate pattern {pattern!r}: {one_line(exc)}") from exc
    return re.compile("|".join(f"(?:{p})" for p in patterns))


def is_boilerplate(line: str, config: CleanConfig) -> bool:
    """Whether `line` is a boilerplate line the cleaner drops (short, and matching a pattern or a navigation bar).

    Args:
        line: one line, without its newline.
        config: the built-in patterns apply when `remove_boilerplate` is on; `boilerplate_patterns` always.
    """
    stripped = line.strip()
    if not stripped or len(stripped) >= config.max_boilerplate_line_chars:
        return False
    if config.remove_boilerplate and _builtin_boilerplate(stripped):
        return True
    extra = _user_patterns(tuple(config.boilerplate_patterns))
    return extra is not None and extra.search(stripped) is not None


def _drop_boilerplate(text: str, config: CleanConfig) -> tuple[str, int]:
    lines = text.split("\n")
    kept = [line for line in lines if not is_boilerplate(line, config)]
    return "\n".join(kept), len(lines) - len(kept)


# ---------------------------------------------------------------- the cleaner


def clean_text(text: str, config: CleanConfig) -> tuple[str, Counter[str]]:
    """Clean one text.

    Args:
        text: the text.
        config: which steps run.

    Returns:
        The cleaned text, and counts of what changed: "unicode_fixed", "normalized", "whitespace_fixed"
        (1 each when the step changed the text) and "boilerplate_lines" (lines dropped).
    """
    counts: Counter[str] = Counter()
    # Each step can hand ftfy new mojibake: removing an invisible character or respacing joins "Ã" and " ",
    # NFC composes "e" + U+0301 into "é" after "Ã". So the three steps repeat until a round changes nothing
    # (clean text takes one round), which makes cleaning idempotent.
    for _ in range(3):
        before = text
        if config.fix_unicode:
            fixed = _fix_unicode(text)
            if fixed != text:
                counts["unicode_fixed"] = 1
                text = fixed
        if config.normalization and not unicodedata.is_normalized(config.normalization, text):  # type: ignore[arg-type]
            text = unicodedata.normalize(config.normalization, text)  # type: ignore[arg-type]
            counts["normalized"] = 1
        if config.normalize_whitespace:
            tidy = _tidy_whitespace(text)
            if tidy != text:
                counts["whitespace_fixed"] = 1
                text = tidy
        if text == before:
            break
    if config.remove_boilerplate or config.boilerplate_patterns:
        text, dropped = _drop_boilerplate(text, config)
        if dropped:
            counts["boilerplate_lines"] += dropped
            if config.normalize_whitespace:  # dropped lines can leave blank lines side by side
                text = _BLANK_LINES.sub("\n\n", text).strip("\n")
    return text, counts


class Cleaner:
    """Cleans documents: `clean_text` on each one, with what changed counted in the tally under "clean".

    Args:
        config: which cleaning steps run.
    """

    def __init__(self, config: CleanConfig) -> None:
        self.config = config

    def __call__(self, doc: Document, tally: Tally) -> Document:
        """The cleaned document (a new one; `doc` is not changed).

        Counts ("clean", "ok") with the cleaned text's bytes for every document, ("clean", "changed") for each
        one the cleaner changed, and the counts of `clean_text` ("clean", "boilerplate_lines" is lines).
        """
        text, counts = clean_text(doc.text, self.config)
        for outcome, n in counts.items():
            tally.count("clean", outcome, n=n)
        if text != doc.text:
            tally.count("clean", "changed")
        tally.count("clean", "ok", text)
        return dataclasses.replace(doc, text=text)
