"""Language identification: the Chinese script shortcut, py3langid for the rest, the per-document cache,
and the language filter's decisions."""

from __future__ import annotations

import pytest

from puyu.data.document import Document
from puyu.data.filters import FiltersConfig, LanguageConfig, annotate_language, build_filters, detect_language
from puyu.data.filters import language as language_module
from puyu.data.filters.language import SAMPLE_CHARS, LanguageFilter

EN = (
    "Ada Lovelace was born in London in 1815, the only legitimate child of the poet Lord Byron. Her mother "
    "insisted that she study mathematics and science, hoping to steer her away from her father's temperament."
)
ZH = (
    "大熊猫是中国特有的哺乳动物，主要生活在四川、陕西和甘肃的山区。它们的毛色黑白相间，体形肥圆，"
    "成年个体的体重一般在八十到一百二十公斤之间。"
)
JA = (
    "東京都は火曜日、都心の路面電車を四キロ延伸する計画を正式に決定した。延伸区間は大学のキャンパスと"
    "中央駅を結び、一日に数千台の車を道路から減らす効果があると見込まれている。"
)
DE = (
    "Der Stadtrat hat am Dienstag beschlossen, die Straßenbahnlinie in der Innenstadt um vier Kilometer zu "
    "verlängern. Damit endet eine Debatte, die sich fast zwei Jahre hingezogen hatte."
)


@pytest.mark.parametrize(
    ("text", "language", "min_score"),
    [
        (EN, "en", 0.99),
        (ZH, "zh", 1.0),
        (JA, "ja", 0.99),
        (DE, "de", 0.99),
        ("The weather is nice today.", "en", 0.9),
        ("Das ist ein schönes Haus.", "de", 0.99),
        ("Bonjour tout le monde, comment allez-vous?", "fr", 0.99),
        ("今天天气很好。", "zh", 1.0),
        ("これは日本語です。", "ja", 0.99),
        ("안녕하세요 저는 학생입니다", "ko", 0.99),
    ],
)
def test_detects_the_language_with_confidence(text: str, language: str, min_score: float) -> None:
    detected, score = detect_language(text)
    assert detected == language
    assert min_score <= score <= 1.0


@pytest.mark.parametrize("text", ["", "   \n\t", "12345 !!! ???", "★☆→←", "ok", "Paris"])
def test_text_without_letters_or_evidence_is_unknown(text: str) -> None:
    assert detect_language(text) == ("unknown", 0.0)


def test_mixed_chinese_and_english_goes_by_the_dominant_script() -> None:
    chinese_with_terms = "我们使用PyTorch和Hugging Face的Transformers库，在8张A100 GPU上训练了一个70亿参数的模型。"
    assert detect_language(chinese_with_terms) == ("zh", 1.0)
    english_with_chinese = (
        "Mapo tofu (麻婆豆腐) is one of the best known dishes of Sichuan cuisine, made with soft tofu."
    )
    assert detect_language(english_with_chinese)[0] == "en"


def test_chinese_quoting_a_japanese_title_stays_chinese_but_japanese_does_not_become_chinese() -> None:
    quoting = ZH + "我最喜欢的动画是《となりのトトロ》，每年都会看一遍。"  # 7 kana among ~85 CJK characters
    assert detect_language(quoting) == ("zh", pytest.approx(1 - 7 / 85, abs=0.05))
    assert detect_language(JA)[0] == "ja"  # about half of the CJK characters are kana


def test_long_documents_are_classified_from_a_middle_sample(monkeypatch) -> None:
    seen: list[int] = []
    identifier = language_module._get_identifier()
    real_rank = identifier.rank

    class Spy:
        labels = identifier.labels

        def rank(self, text: str):
            seen.append(len(text))
            return real_rank(text)

    monkeypatch.setattr(language_module, "_identifier", Spy())
    # Headers and footers in English around a long German body: the middle decides.
    text = "Home | News | Contact\n" + (DE + " ") * 100 + "\nCopyright 2024. All rights reserved."
    assert detect_language(text)[0] == "de"
    assert seen == [SAMPLE_CHARS]


def test_annotation_runs_detection_once_and_is_kept_in_meta(monkeypatch) -> None:
    calls: list[str] = []
    real = language_module.detect_language

    def counting(text: str) -> tuple[str, float]:
        calls.append(text)
        return real(text)

    monkeypatch.setattr(language_module, "detect_language", counting)
    more = (
        " In 1833 she met Charles Babbage, who was working on a mechanical calculator, and the two began a long "
        "friendship. Her notes on his proposed Analytical Engine include a method for computing Bernoulli numbers."
    )
    doc = Document(EN + more, "d:1", "d.jsonl")
    chain = build_filters(FiltersConfig())
    assert {rule.name: rule(doc) for rule in chain} == {rule.name: None for rule in chain}
    assert len(calls) == 1
    assert doc.meta["language"] == "en" and doc.meta["language_score"] == pytest.approx(1.0, abs=1e-3)
    assert annotate_language(doc) == "en" and len(calls) == 1


def test_a_language_already_in_meta_is_trusted() -> None:
    rule = LanguageFilter(LanguageConfig())
    assert rule(Document(EN, "d", "s", {"language": "de"})) == "language not kept: de"
    assert rule(Document(DE, "d", "s", {"language": "en-US"})) is None  # the primary subtag decides
    assert rule(Document(DE, "d", "s", {"language": "zh_Hans"})) is None


def test_language_filter_reasons() -> None:
    rule = LanguageFilter(LanguageConfig(languages=["en", "zh"], min_score=0.65))
    assert rule(Document(EN, "d", "s")) is None
    assert rule(Document(ZH, "d", "s")) is None
    assert rule(Document(DE, "d", "s")) == "language not kept: de"
    assert rule(Document("12345 67890", "d", "s")) == "no language: no letters or no known words"
    low = Document("x", "d", "s", {"language": "en", "language_score": 0.5})
    assert rule(low) == "language score too low: en 0.500 < 0.65"
    # The boundary is inclusive.
    assert rule(Document("x", "d", "s", {"language": "en", "language_score": 0.65})) is None


def test_keeping_other_languages_is_a_setting() -> None:
    rule = LanguageFilter(LanguageConfig(languages=["de", "ja"]))
    assert rule(Document(DE, "d", "s")) is None
    assert rule(Document(JA, "d", "s")) is None
    assert rule(Document(EN, "d", "s")) == "language not kept: en"
