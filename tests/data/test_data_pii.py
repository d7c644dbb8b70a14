"""PII scrubbing: what is replaced and what stays, in English and Chinese text, with counts per kind."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from puyu.data.document import Document, Tally
from puyu.data.pii import PiiConfig, PiiScrubber, is_chinese_id, scrub_pii
from puyu.errors import PuyuError

DEFAULT = PiiConfig()


def check_char(first17: str) -> str:
    """ISO 7064 MOD 11-2, written as the formula (not the lookup table the scrubber uses)."""
    total = sum(int(d) * (2 ** (17 - i) % 11) for i, d in enumerate(first17))
    value = (12 - total % 11) % 11
    return "X" if value == 10 else str(value)


def wrong_check_char(first17: str) -> str:
    right = check_char(first17)
    return "0" if right != "0" else "1"


@pytest.mark.parametrize(
    ("text", "expected", "counts"),
    [
        # e-mail
        (
            "Contact john.doe+news@mail.example.co.uk or JANE_D@sub.example.org.",
            "Contact <EMAIL> or <EMAIL>.",
            {"email": 2},
        ),
        (
            "请联系zhang.san@example.com获取资料，或发邮件到13812345678@qq.com。",
            "请联系<EMAIL>获取资料，或发邮件到<EMAIL>。",
            {"email": 2},
        ),
        # North American and international phones
        (
            "Call (555) 123-4567, 555-123-4567, 555.123.4567, 1-800-555-1234 or +1 555 123 4567.",
            "Call <PHONE>, <PHONE>, <PHONE>, <PHONE> or <PHONE>.",
            {"phone": 5},
        ),
        (
            "London +44 20 7946 0958, Berlin +49 30 1234567, Paris +33 1 23 45 67 89, Tokyo +81-3-1234-5678, "
            "UK +441234567890.",
            "London <PHONE>, Berlin <PHONE>, Paris <PHONE>, Tokyo <PHONE>, UK <PHONE>.",
            {"phone": 5},
        ),
        # Chinese mobile and landline
        (
            "手机：13812345678，138 1234 5678，138-1234-5678，+86 138 1234 5678，+86-13812345678，"
            "(+86)13912345678，008615012345678。",
            "手机：<PHONE>，<PHONE>，<PHONE>，<PHONE>，<PHONE>，<PHONE>，<PHONE>。",
            {"phone": 7},
        ),
        ("座机：010-12345678，0755-1234567，(021) 87654321。", "座机：<PHONE>，<PHONE>，<PHONE>。", {"phone": 3}),
        ("联系电话13812345678转人工", "联系电话<PHONE>转人工", {"phone": 1}),
        # IP addresses (public ones: private, loopback and documentation addresses stay by default)
        (
            "Server at 93.184.216.34, gateway 8.8.4.4:8080, DNS 1.1.1.1.",
            "Server at <IP_ADDRESS>, gateway <IP_ADDRESS>:8080, DNS <IP_ADDRESS>.",
            {"ip": 3},
        ),
        ("服务器IP是61.135.169.121。", "服务器IP是<IP_ADDRESS>。", {"ip": 1}),
        (
            "IPv6 2606:4700:4700:0000:0000:0000:0000:1111, 2001:4860:4860::8888, ::ffff:8.8.8.8.",
            "IPv6 <IP_ADDRESS>, <IP_ADDRESS>, <IP_ADDRESS>.",
            {"ip": 3},
        ),
        ("[2a00:1450:4001:82b::200e]:443", "[<IP_ADDRESS>]:443", {"ip": 1}),
        # ID numbers (the two examples of GB 11643-1999) and SSN
        (
            "身份证号：11010519491231002X，另一个440524188001010014。",
            "身份证号：<ID_NUMBER>，另一个<ID_NUMBER>。",
            {"id_card": 2},
        ),
        ("lowercase x: 11010519491231002x", "lowercase x: <ID_NUMBER>", {"id_card": 1}),
        ("SSN 123-45-6789.", "SSN <ID_NUMBER>.", {"id_card": 1}),
        # all kinds at once
        (
            "Mail a@b.io, call 555-123-4567, host 8.8.8.8, ID 11010519491231002X.",
            "Mail <EMAIL>, call <PHONE>, host <IP_ADDRESS>, ID <ID_NUMBER>.",
            {"email": 1, "phone": 1, "ip": 1, "id_card": 1},
        ),
    ],
)
def test_replaced(text: str, expected: str, counts: dict[str, int]) -> None:
    assert scrub_pii(text, DEFAULT) == (expected, Counter(counts))


KEPT = [
    "Version 1.2.3, 1.2.3.4.5, v1.2.3.4, version 10.0.0.1, 版本1.2.3.4, 256.1.1.1, 01.02.03.04, dates 2023.10.12.",
    "In 2023 the price was $1,234.56 or ¥13800; 价格为13800元; pi is 3.14159265358979; 0.5% growth.",
    "Order #555-123-4567; order no. 13812345678; 订单号13812345678; 订单号：202310121234567890; 运单号 0755-1234567.",
    "Timestamps 2023-10-12 13:45:30, 20231012134530, 1697100000, 1697100000123, 12:30:45.123.",
    "Code: std::vector<int>, a::b, dead::beef, x :: Int, MAC 00:1A:2B:3C:4D:5E, ratio 3:2:1.",
    "Numbers 12812345678, 1381234567, 138123456789, 000-12-3456, 666-12-3456, 900-12-3456, 123-00-4567.",
    "Scores 3-2, dates 2023-01-02, ranges 100-200, ISBN 978-3-16-148410-0, 1+2=3, +12345678 views.",
    "Lists 250 300 4000 and 123-456-7890 (no area code starts with 1).",
    "Not an e-mail: user@localhost, @handle, a@b, name at example dot com.",
    "第1.2.3.4节；共有13812345678个像素？不，是138亿。",
]


@pytest.mark.parametrize("text", KEPT)
def test_kept(text: str) -> None:
    assert scrub_pii(text, DEFAULT) == (text, Counter())


def test_private_addresses_stay_unless_asked() -> None:
    text = (
        "router 192.168.1.1, host 10.0.0.254, mask 255.255.255.0, any 0.0.0.0, loopback 127.0.0.1, "
        "doc 192.0.2.1 and 2001:db8::1, link-local fe80::1ff:fe23:4567:890a, mapped ::ffff:192.0.2.1"
    )
    assert scrub_pii(text, DEFAULT) == (text, Counter())
    everything = PiiConfig(only_public_ip=False)
    assert scrub_pii(text, everything) == (
        "router <IP_ADDRESS>, host <IP_ADDRESS>, mask <IP_ADDRESS>, any <IP_ADDRESS>, loopback <IP_ADDRESS>, "
        "doc <IP_ADDRESS> and <IP_ADDRESS>, link-local <IP_ADDRESS>, mapped <IP_ADDRESS>",
        Counter(ip=9),
    )
    # Version strings are not addresses even when every address is replaced.
    for kept in ("version 10.0.0.1", "v1.2.3.4", "版本1.2.3.4", "1.2.3.4.5", "第1.2.3.4节", "01.02.03.04", "256.1.1.1"):
        assert scrub_pii(kept, everything) == (kept, Counter()), kept


def test_chinese_id_checksum_and_birth_date() -> None:
    assert is_chinese_id("11010519491231002X") and is_chinese_id("440524188001010014")
    body = "32010619900307123"
    assert is_chinese_id(body + check_char(body))
    wrong = body + wrong_check_char(body)
    assert not is_chinese_id(wrong)
    # A random 18-digit number with a wrong checksum is not an ID, even with a plausible date.
    assert scrub_pii(f"编号 {wrong} 和 {body + check_char(body)}", DEFAULT) == (
        f"编号 {wrong} 和 <ID_NUMBER>",
        Counter(id_card=1),
    )
    feb30 = "11010519900230123"
    future = "11010520990101123"
    for first17 in (feb30, future):
        number = first17 + check_char(first17)
        assert not is_chinese_id(number)
        assert scrub_pii(number, DEFAULT)[1] == Counter()


@given(st.text(alphabet="0123456789", min_size=17, max_size=17))
def test_checksum_matches_the_iso_7064_formula(digits: str) -> None:
    first17 = "110105" + "19900101" + digits[:3]
    assert is_chinese_id(first17 + check_char(first17))
    assert not is_chinese_id(first17 + wrong_check_char(first17))


def test_kinds_can_be_turned_off_and_placeholders_changed() -> None:
    text = "a@b.io 555-123-4567 8.8.8.8 11010519491231002X"
    config = PiiConfig(email=False, ip=False, replacements={"phone": "[TEL]"})
    assert scrub_pii(text, config) == ("a@b.io [TEL] 8.8.8.8 <ID_NUMBER>", Counter(phone=1, id_card=1))
    with pytest.raises(PuyuError, match="unknown kind 'mail'"):
        PiiConfig(replacements={"mail": "x"})


def test_scrubber_counts_per_kind() -> None:
    tally = Tally()
    scrubber = PiiScrubber(DEFAULT)
    doc = Document(text="邮件 a@b.cn 和 c@d.cn，电话 13812345678。", id="f:1", source="f", meta={"k": 1})
    out = scrubber(doc, tally)
    assert (out.text, out.id, out.meta) == ("邮件 <EMAIL> 和 <EMAIL>，电话 <PHONE>。", "f:1", {"k": 1})
    assert doc.text.startswith("邮件 a@b.cn")
    scrubber(Document(text="nothing here", id="f:2", source="f"), tally)
    assert tally.docs == Counter({"pii/email": 2, "pii/phone": 1})
