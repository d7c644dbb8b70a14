"""Personal data scrubbing: e-mail addresses, phone numbers, IP addresses and ID numbers become placeholders.

Each kind is a pattern plus a check on what it found, so ordinary numbers stay: an IPv4 address needs
four octets of 0-255 and no version context ("version 1.2.3.4"), an IPv6 address must parse, a Chinese
resident ID must have a real date of birth and a correct check character, a phone number must have the
shape of one (and not follow "order no." or "订单号"). Years, prices, decimals, timestamps and version
strings do not have those shapes.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import PuyuError
from .document import Document, Tally

DEFAULT_REPLACEMENTS: dict[str, str] = {
    "email": "<EMAIL>",
    "phone": "<PHONE>",
    "ip": "<IP_ADDRESS>",
    "id_card": "<ID_NUMBER>",
}


@dataclass
class PiiConfig:
    """Which kinds of personal data are replaced, and by what.

    Args:
        email: e-mail addresses.
        phone: phone numbers: international (+CC …), North American ((555) 123-4567, 555-123-4567), Chinese
            mobile (138 1234 5678, +86 …) and landline (010-12345678).
        ip: IPv4 and IPv6 addresses.
        only_public_ip: leave addresses that identify no one: private networks (192.168.x.x, 10.x.x.x),
            loopback, link-local, netmasks, documentation ranges. As datatrove does; networking text keeps
            its examples.
        id_card: Chinese resident ID numbers (checksum verified) and US social security numbers (123-45-6789).
        replacements: placeholder per kind; kinds left out keep their default placeholder.
    """

    email: bool = True
    phone: bool = True
    ip: bool = True
    only_public_ip: bool = True
    id_card: bool = True
    replacements: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_REPLACEMENTS))

    def __post_init__(self) -> None:
        unknown = sorted(set(self.replacements) - set(DEFAULT_REPLACEMENTS))
        if unknown:
            raise PuyuError(f"pii replacements: unknown kind {unknown[0]!r} (kinds: {', '.join(DEFAULT_REPLACEMENTS)})")


# ---------------------------------------------------------------- checks on a found candidate

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def is_chinese_id(number: str) -> bool:
    """Whether an 18-character string is a valid Chinese resident ID number (GB 11643-1999).

    Checks the date of birth (a real date, not in the future) and the ISO 7064 MOD 11-2 check character.

    Args:
        number: 17 digits and a check character (a digit or X).
    """
    if len(number) != 18 or not number[:17].isascii() or not number[:17].isdigit():
        return False
    try:
        born = datetime.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    if not datetime.date(1850, 1, 1) <= born <= datetime.date.today():
        return False
    total = sum(int(digit) * weight for digit, weight in zip(number[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == number[17].upper()


def _not_after(context: re.Pattern[str]) -> Callable[[re.Match[str]], bool]:
    """A check that fails when the text just before the match ends with `context`."""

    def check(match: re.Match[str]) -> bool:
        return context.search(match.string, max(0, match.start() - 24), match.start()) is None

    return check


def _ipv6(match: re.Match[str]) -> bool:
    candidate = match.group(0)
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    # "::", "::1" and "a::b" or "dead::beef" are more often code than addresses.
    groups = sum(1 for group in candidate.split(":") if group)
    return groups >= 3 or (groups == 2 and any(char.isdigit() for char in candidate))


def _is_public_ip(address: str) -> bool:
    return ipaddress.ip_address(address).is_global


def _international_phone(match: re.Match[str]) -> bool:
    candidate = match.group(0)
    digits = sum(char.isdigit() for char in candidate)
    separated = any(char in " .-()" for char in candidate)
    return 8 <= digits <= 15 and (separated or digits >= 10)  # E.164 has at most 15 digits


# "version 1.2.3.4", "v1.2.3.4", "版本 1.2.3.4", "§1.2.3.4", "第1.2.3.4节"
_VERSION_CONTEXT = re.compile(
    r"(?:\b(?:version|ver|release|build|v|section|sec|§)|版本号?|章节|第)\.?\s*[:：]?\s*$", re.IGNORECASE
)
# "order no. 13812345678", "订单号：13812345678"
_NUMBER_CONTEXT = re.compile(
    r"(?:\b(?:order|invoice|tracking|transaction|account|acct|serial|sku|isbn|ref|reference)"
    r"(?:\s*(?:no|number|num|#))?|订单|单号|编号|流水号|运单|快递|账号|卡号|序列号)\.?\s*(?:号码|号)?\s*[:：#]?\s*$",
    re.IGNORECASE,
)


def _always(match: re.Match[str]) -> bool:
    return True


# ---------------------------------------------------------------- patterns

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"


@dataclass(frozen=True)
class _Rule:
    kind: str
    pattern: re.Pattern[str]
    check: Callable[[re.Match[str]], bool]
    needs: str  # a character every match contains: skips the regex for most texts


# Order matters: e-mail addresses first (they contain digits a phone pattern would take, 13812345678@qq.com),
# IPv6 before IPv4 (::ffff:192.0.2.1), ID numbers before phone numbers. Placeholders hold no digits, so a
# later pattern never matches inside an earlier replacement.
_RULES = (
    _Rule(
        "email",
        re.compile(
            r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9_%+\-][A-Za-z0-9._%+\-]{0,63}"
            r"@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9\-])"
        ),
        _always,
        "@",
    ),
    _Rule(
        "ip",
        re.compile(
            r"(?<![A-Za-z0-9_:.])(?=[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:)[0-9A-Fa-f:]{2,39}"
            r"(?:(?<=:)(?:[0-9]{1,3}\.){3}[0-9]{1,3})?(?![A-Za-z0-9_:]|\.[0-9])"
        ),
        _ipv6,
        ":",
    ),
    _Rule(
        "ip",
        re.compile(rf"(?<![A-Za-z0-9.]){_OCTET}(?:\.{_OCTET}){{3}}(?![A-Za-z0-9]|\.[0-9])"),
        _not_after(_VERSION_CONTEXT),
        ".",
    ),
    _Rule(
        "id_card",
        re.compile(
            r"(?<![A-Za-z0-9])[1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])"
            r"[0-9]{3}[0-9Xx](?![A-Za-z0-9])"
        ),
        lambda match: is_chinese_id(match.group(0)),
        "",
    ),
    # US social security number: no 000, 666 or 9xx area, no 00 group, no 0000 serial.
    _Rule(
        "id_card",
        re.compile(r"(?<![A-Za-z0-9\-])(?!000|666|9)[0-9]{3}-(?!00)[0-9]{2}-(?!0000)[0-9]{4}(?![0-9]|-[0-9])"),
        _not_after(_NUMBER_CONTEXT),
        "-",
    ),
    # Chinese mobile: 1[3-9]x xxxx xxxx, with or without +86 / 0086 / (+86), spaces or dashes.
    _Rule(
        "phone",
        re.compile(
            r"(?<![A-Za-z0-9+\-])(?:(?:\+|00)86[ \-]?|\(\+?86\)[ \-]?)?1[3-9][0-9](?:[ \-]?[0-9]{4}){2}(?![0-9])"
            r"(?!\s*[个元块次人件亿万千百米吨条张本台辆位名天年岁])"  # a count or an amount: "13812345678个"
        ),
        _not_after(_NUMBER_CONTEXT),
        "",
    ),
    # Chinese landline: 0xx(x)-xxxxxxx(x) or (0xx(x)) xxxxxxxx.
    _Rule(
        "phone",
        re.compile(r"(?<![A-Za-z0-9\-])(?:\(0[0-9]{2,3}\)[ \-]?|0[0-9]{2,3}-)[0-9]{7,8}(?![0-9])"),
        _not_after(_NUMBER_CONTEXT),
        "",
    ),
    # International: +CC and groups of digits.
    _Rule(
        "phone",
        re.compile(r"(?<![A-Za-z0-9+])\+[1-9][0-9]{0,2}(?:[ .\-]?\(?[0-9]{1,5}\)?){1,6}(?![0-9])"),
        _international_phone,
        "+",
    ),
    # North American: (555) 123-4567, 555-123-4567, 555.123.4567, 1-800-555-1234. Plain spaces only after
    # "(555)": "250 300 4000" is more often a list of numbers.
    _Rule(
        "phone",
        re.compile(
            r"(?<![A-Za-z0-9+\-.])(?:\+?1[ .\-])?"
            r"(?:\([2-9][0-9]{2}\)[ \-]?[0-9]{3}[ .\-][0-9]{4}|[2-9][0-9]{2}(?P<sep>[.\-])[0-9]{3}(?P=sep)[0-9]{4})"
            r"(?![0-9]|[.\-][0-9])"
        ),
        _not_after(_NUMBER_CONTEXT),
        "",
    ),
)


def scrub_pii(text: str, config: PiiConfig) -> tuple[str, Counter[str]]:
    """Replace the personal data in `text` by placeholders.

    Args:
        text: the text.
        config: which kinds are replaced, and by what.

    Returns:
        The text, and the number of replacements per kind ("email", "phone", "ip", "id_card").
    """
    counts: Counter[str] = Counter()
    for rule in _RULES:
        if not getattr(config, rule.kind) or (rule.needs and rule.needs not in text):
            continue
        placeholder = config.replacements.get(rule.kind, DEFAULT_REPLACEMENTS[rule.kind])

        public_only = rule.kind == "ip" and config.only_public_ip

        def replace(
            match: re.Match[str], rule: _Rule = rule, placeholder: str = placeholder, public_only: bool = public_only
        ) -> str:
            if not rule.check(match) or (public_only and not _is_public_ip(match.group(0))):
                return match.group(0)
            counts[rule.kind] += 1
            return placeholder

        text = rule.pattern.sub(replace, text)
    return text, counts


class PiiScrubber:
    """Scrubs documents with `scrub_pii`, counting ("pii", kind) in the tally with the number of replacements.

    Args:
        config: which kinds are replaced, and by what.
    """

    def __init__(self, config: PiiConfig) -> None:
        self.config = config

    def __call__(self, doc: Document, tally: Tally) -> Document:
        """The scrubbed document (a new one; `doc` is not changed)."""
        text, counts = scrub_pii(doc.text, self.config)
        for kind, n in counts.items():
            tally.count("pii", kind, n=n)
        return dataclasses.replace(doc, text=text)
