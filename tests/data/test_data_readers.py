"""Readers: which files the inputs name, and the documents, ids and problems each file format gives."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from data_support import make_pdf
from pypdf import PdfWriter

from puyu.data.document import Document, Tally
from puyu.data.readers import _READERS as READERS
from puyu.data.readers import SUPPORTED_SUFFIXES, expand_inputs, read_documents
from puyu.errors import PuyuError


def read(path: Path, **kwargs: str) -> tuple[list[Document], Tally]:
    tally = Tally()
    return list(read_documents(path, tally, **kwargs)), tally


def messages(tally: Tally) -> list[tuple[int | None, str]]:
    return [(p.line, p.message) for p in tally.problems]


def jsonl_bytes(rows: list[dict[str, object]]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def encrypted_pdf(user_password: str) -> bytes:
    writer = PdfWriter(clone_from=io.BytesIO(make_pdf(["locked text"])))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# ---------------------------------------------------------------- inputs


def test_every_supported_suffix_has_a_reader() -> None:
    assert set(READERS) == set(SUPPORTED_SUFFIXES)


def test_expand_inputs_folders_globs_files_sorted_and_deduplicated(tmp_path: Path) -> None:
    (tmp_path / "corpus" / "sub").mkdir(parents=True)
    (tmp_path / "corpus" / ".git").mkdir()
    for name in ["corpus/b.txt", "corpus/a.JSONL.GZ", "corpus/sub/c.md", "corpus/notes.docx", "corpus/.git/x.txt"]:
        (tmp_path / name).write_text("x")
    (tmp_path / "corpus" / ".hidden.txt").write_text("x")
    (tmp_path / "other.csv").write_text("text\nx\n")
    tally = Tally()
    files = expand_inputs(
        [tmp_path / "corpus", str(tmp_path / "*.csv"), tmp_path / "corpus" / "b.txt", tmp_path / "corpus/sub/"],
        tally,
    )
    root = str(tmp_path)
    assert [str(f).removeprefix(root) for f in files] == [
        "/corpus/a.JSONL.GZ",
        "/corpus/b.txt",
        "/corpus/sub/c.md",
        "/other.csv",
    ]
    assert messages(tally) == [(None, "unknown extension: notes.docx")]
    assert tally.docs["problems/unknown extension"] == 1


def test_expand_inputs_recursive_glob_counts_unknown_matches(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.jsonl").write_text("{}")
    (tmp_path / "a" / "y.parquet").write_text("")
    (tmp_path / "a" / "z.bin").write_text("")
    tally = Tally()
    files = expand_inputs([str(tmp_path / "a" / "**" / "*")], tally)
    assert [f.name for f in files] == ["x.jsonl", "y.parquet"]
    assert messages(tally) == [(None, "unknown extension: z.bin")]


def test_expand_inputs_errors_name_the_input(tmp_path: Path) -> None:
    with pytest.raises(PuyuError, match=r"missing\.txt: no such file or folder"):
        expand_inputs([tmp_path / "missing.txt"])
    with pytest.raises(PuyuError, match=r"\*.jsonl: no readable files"):
        expand_inputs([str(tmp_path / "*.jsonl")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(PuyuError, match="empty: no readable files"):
        expand_inputs([tmp_path / "empty"])
    (tmp_path / "data.docx").write_text("x")
    with pytest.raises(PuyuError, match=r"data.docx: unsupported file type"):
        expand_inputs([tmp_path / "data.docx"])
    with pytest.raises(PuyuError, match="no inputs"):
        expand_inputs([])


def test_unknown_extension_read_directly_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "x.docx"
    path.write_text("hello")
    docs, tally = read(path)
    assert docs == [] and messages(tally) == [(None, "unknown extension: x.docx")]


# ---------------------------------------------------------------- text and markdown


def test_text_file_is_one_document(tmp_path: Path) -> None:
    path = tmp_path / "a.md"
    path.write_bytes("\ufeff# 标题\r\n\r\nEnglish line.\r\n中文段落。\n".encode())
    docs, tally = read(path)
    assert docs == [Document(text="# 标题\n\nEnglish line.\n中文段落。\n", id=str(path), source=str(path))]
    assert tally.docs["read/ok"] == 1
    assert tally.bytes["read/ok"] == len(docs[0].text.encode())
    assert tally.problems == []


def test_read_documents_takes_a_str_path(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("text")
    tally = Tally()
    assert [d.id for d in read_documents(str(path), tally)] == [str(path)]  # type: ignore[arg-type]


def test_text_file_with_broken_utf8_is_kept_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"line one\nline \xff two\n")
    docs, tally = read(path)
    assert [d.text for d in docs] == ["line one\nline \ufffd two\n"]
    assert messages(tally) == [(2, "invalid utf-8: byte 0xff at offset 14")]


def test_empty_and_blank_files_are_problems(tmp_path: Path) -> None:
    cases = [
        ("e.txt", b""),
        ("w.md", b"  \n\n"),
        ("e.jsonl", b"\n\n"),
        ("e.json", b" "),
        ("e.html", b""),
        ("e.jsonl.gz", gzip.compress(b"")),
        ("e.json.zst", b""),
    ]
    for name, content in cases:
        (tmp_path / name).write_bytes(content)
        docs, tally = read(tmp_path / name)
        assert docs == [] and messages(tally) == [(None, "empty file")], name


# ---------------------------------------------------------------- JSON Lines


def test_jsonl_records_ids_meta_and_problems(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(
        b'{"text": "first", "url": "http://x"}\n'
        b"\n"
        b"{not json}\n"
        b'{"content": "\xe4\xb8\xad\xe6\x96\x87\xe5\x86\x85\xe5\xae\xb9"}\n'
        b'{"title": "no text"}\n'
        b'{"text": "caf\xe9"}\n'
        b"[1, 2]\n"
        b'{"text": null}\n'
        b'{"text": 5}\n'
        b'{"text": "last", "meta": {"lang": "en"}, "score": 1}'
    )
    docs, tally = read(path)
    assert [(d.id, d.text, d.meta) for d in docs] == [
        (f"{path}:1", "first", {"url": "http://x"}),
        (f"{path}:4", "中文内容", {}),
        (f"{path}:6", "caf\ufffd", {}),
        (f"{path}:10", "last", {"lang": "en", "score": 1}),
    ]
    assert all(d.source == str(path) for d in docs)
    assert messages(tally) == [
        (3, "malformed json: Expecting property name enclosed in double quotes at column 2"),
        (5, "missing text field: no 'text' in the record"),
        (6, "invalid utf-8: byte 0xe9 at offset 13"),
        (7, "not an object: the line holds a list"),
        (8, "missing text field: 'text' is null, not a string"),
        (9, "missing text field: 'text' is int, not a string"),
    ]
    assert tally.docs["read/ok"] == 4
    assert tally.docs["problems/missing text field"] == 3


def test_jsonl_text_and_id_fields(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(jsonl_bytes([{"body": "x", "doc_id": 17}, {"body": "y"}, {"text": "z", "doc_id": "k"}]))
    docs, tally = read(path, text_field="body", id_field="doc_id")
    assert [(d.id, d.text) for d in docs] == [("17", "x"), (f"{path}:2", "y")]
    # Only the default field falls back to "content"; a named field must be there.
    assert messages(tally) == [(3, "missing text field: no 'body' in the record")]


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".jsonl.zst"])
def test_compressed_jsonl(tmp_path: Path, suffix: str) -> None:
    rows = [{"text": f"文档 {i}", "n": i} for i in range(500)]
    data = jsonl_bytes(rows)
    path = tmp_path / f"a{suffix}"
    if suffix.endswith(".gz"):
        path.write_bytes(gzip.compress(data))
    else:
        # Two frames, as written by appending: both are read.
        path.write_bytes(zstandard.compress(data[:5000]) + zstandard.compress(data[5000:]))
    docs, tally = read(path)
    assert [d.text for d in docs] == [r["text"] for r in rows]
    assert docs[-1].id == f"{path}:500" and docs[-1].meta == {"n": 499}
    assert tally.problems == []


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".jsonl.zst"])
def test_truncated_compressed_file_keeps_what_came_before(tmp_path: Path, suffix: str) -> None:
    # Incompressible-ish rows, so half of the compressed file holds many complete lines.
    rows = [{"text": f"row {i} " + format(i * 2654435761 % 2**32, "x") * 20} for i in range(4000)]
    data = jsonl_bytes(rows)
    packed = gzip.compress(data) if suffix.endswith(".gz") else zstandard.compress(data)
    path = tmp_path / f"a{suffix}"
    path.write_bytes(packed[: len(packed) // 2])
    docs, tally = read(path)
    assert 100 < len(docs) < 4000
    assert [d.text for d in docs] == [r["text"] for r in rows[: len(docs)]]
    kind = "gzip" if suffix.endswith(".gz") else "zstd"
    assert len(tally.problems) == 1 and tally.problems[0].message.startswith(f"unreadable {kind}: ")
    assert tally.docs["read/ok"] == len(docs)


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".jsonl.zst"])
def test_compressed_file_that_is_not_compressed_is_a_problem(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"a{suffix}"
    path.write_bytes(b'{"text": "plain"}\n')
    docs, tally = read(path)
    kind = "gzip" if suffix.endswith(".gz") else "zstd"
    assert docs == [] and len(tally.problems) == 1
    assert tally.problems[0].message.startswith(f"unreadable {kind}: ")


def test_fifty_megabyte_single_line(tmp_path: Path) -> None:
    text = "长" * 1000 + "x" * 50_000_000
    path = tmp_path / "big.jsonl"
    path.write_text(json.dumps({"text": text}, ensure_ascii=False) + "\n", encoding="utf-8")
    docs, tally = read(path)
    assert len(docs) == 1 and docs[0].text == text
    assert tally.bytes["read/ok"] == 50_003_000


# ---------------------------------------------------------------- JSON


def test_json_list_and_single_object(tmp_path: Path) -> None:
    items = [{"text": f"第{i}篇 " + "x" * 40_000, "i": i} for i in range(12)]
    items.insert(3, "not an object")  # type: ignore[arg-type]
    path = tmp_path / "list.json"
    path.write_text(json.dumps(items, ensure_ascii=False, indent=2), encoding="utf-8")
    docs, tally = read(path)
    assert [d.meta["i"] for d in docs] == list(range(12))
    assert docs[0].id == f"{path}:1" and docs[3].id == f"{path}:5"
    assert docs[5].text == items[6]["text"]  # type: ignore[index]
    assert messages(tally) == [(14, "not an object: item 4 is a str")]

    single = tmp_path / "one.json.gz"
    single.write_bytes(gzip.compress(json.dumps({"content": "只有一个", "id": "a"}).encode()))
    docs, tally = read(single, id_field="id")
    assert [(d.id, d.text, d.meta) for d in docs] == [("a", "只有一个", {"id": "a"})]
    assert tally.problems == []


def test_json_malformed_keeps_items_before_the_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('[\n{"text": "one"},\n{"text": "two"}\n{"text": "three"}\n]')
    docs, tally = read(path)
    assert [d.text for d in docs] == ["one", "two"]
    assert messages(tally) == [(4, "malformed json: expected ',' or ']' after item 2")]

    path.write_text('[{"text": "one"}, {"text": tru}]')
    docs, tally = read(path)
    assert [d.text for d in docs] == ["one"]
    assert messages(tally) == [(1, "malformed json: Expecting value")]

    path.write_text('{"text": "one"} {"text": "two"}')
    docs, tally = read(path)
    assert [d.text for d in docs] == ["one"]
    assert messages(tally) == [(1, "malformed json: extra data after the top-level value")]

    path.write_text("[]")
    assert messages(read(path)[1]) == [(None, "empty file: an empty list")]
    path.write_text("42")
    assert messages(read(path)[1]) == [(1, "not an object: the file holds a int")]


def test_json_stream_handles_values_split_across_chunks(tmp_path: Path) -> None:
    # Values of every kind straddle the 64 KiB chunk boundaries: numbers, literals, escapes, multi-byte text.
    items = [
        {"text": "é中" * (7000 + i) + '\\"\u2028', "n": 12345678901234567890 + i, "ok": i % 2 == 0, "none": None}
        for i in range(40)
    ]
    for ensure_ascii in (True, False):  # \u escapes, then raw multi-byte UTF-8, across the boundaries
        path = tmp_path / "a.json"
        path.write_text(json.dumps(items, ensure_ascii=ensure_ascii), encoding="utf-8")
        docs, tally = read(path)
        assert [d.text for d in docs] == [item["text"] for item in items]
        assert [d.meta["n"] for d in docs] == [item["n"] for item in items]
        assert tally.problems == []


def test_json_list_is_streamed_and_a_long_value_costs_linear_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from puyu.data.readers import json_records

    buffered: list[int] = []
    read_more = json_records._JsonText._read_more

    def spy(self: json_records._JsonText, at_least: int) -> bool:
        result = read_more(self, at_least)
        buffered.append(len(self.text))
        return result

    monkeypatch.setattr(json_records._JsonText, "_read_more", spy)
    path = tmp_path / "many.json"
    path.write_text(json.dumps([{"text": "w" * 1000, "i": i} for i in range(5000)]))  # 5 MB
    docs, _ = read(path)
    assert len(docs) == 5000 and docs[-1].meta == {"i": 4999}
    assert max(buffered) < 200_000  # a few chunks, never the whole file

    # One 50 MB value: the buffer doubles while the value is incomplete, so this takes well under a second.
    path.write_text(json.dumps({"text": "z" * 50_000_000, "k": 1}))
    docs, tally = read(path)
    assert [(d.id, len(d.text), d.meta) for d in docs] == [(str(path), 50_000_000, {"k": 1})]
    assert tally.problems == []


def test_json_with_broken_utf8(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_bytes(b'[\n{"text": "ok"},\n{"text": "bad \xc3\x28 byte"}\n]')
    docs, tally = read(path)
    assert [d.text for d in docs] == ["ok", "bad \ufffd( byte"]
    assert messages(tally) == [(3, "invalid utf-8: byte 0xc3 at offset 32")]

    # A bad byte far into the file is reported with its own line and file offset.
    head = "[\n" + "".join(json.dumps({"text": "x" * 998}) + ",\n" for _ in range(200))
    path.write_bytes(head.encode() + b'{"text": "\xff"}\n]')
    docs, tally = read(path)
    assert len(docs) == 201 and docs[-1].text == "\ufffd"
    assert messages(tally) == [(202, f"invalid utf-8: byte 0xff at offset {len(head) + 10}")]


# ---------------------------------------------------------------- CSV and Parquet


def test_csv_rows(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(
        "\ufeffid,content,lang\r\n"
        '1,"multi\nline, with comma",en\r\n'
        "2,中文，内容,zh\r\n"
        "\r\n"
        "3\r\n"
        "4,extra,xx,yy\r\n"
        "5,,en\r\n".encode()
    )
    docs, tally = read(path, id_field="id")
    assert [(d.id, d.text, d.meta) for d in docs] == [
        ("1", "multi\nline, with comma", {"id": "1", "lang": "en"}),
        ("2", "中文，内容", {"id": "2", "lang": "zh"}),
        ("4", "extra", {"id": "4", "lang": "xx", "extra_fields": ["yy"]}),
        ("5", "", {"id": "5", "lang": "en"}),
    ]
    assert messages(tally) == [(6, "missing text field: no 'text' in the record")]

    docs, _ = read(path)
    assert [d.id for d in docs] == [f"{path}:2", f"{path}:4", f"{path}:7", f"{path}:8"]


def test_csv_problems(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("title,body\nx,y\n")
    assert messages(read(path)[1]) == [(1, "missing text field: no column 'text' in the header")]
    path.write_text("text\n")
    assert messages(read(path)[1]) == [(None, "empty file: a header and no rows")]
    path.write_text("")
    assert messages(read(path)[1]) == [(None, "empty file")]
    path.write_bytes(b"text,n\nfine,1\nstray\rreturn,2\nafter,3\ncaf\xe9,4\n")
    docs, tally = read(path)
    assert [d.text for d in docs] == ["fine", "after", "caf\ufffd"]
    problems = messages(tally)
    assert [line for line, _ in problems] == [3, 5]
    assert problems[0][1].startswith("malformed csv: new-line character seen in unquoted field")
    assert problems[1][1] == "invalid utf-8: byte 0xe9 at offset 3"


def test_parquet_rows_in_batches(tmp_path: Path) -> None:
    import datetime

    n = 600  # more than one record batch
    table = pa.table(
        {
            "text": [f"段落 {i}" if i != 7 else None for i in range(n)],
            "id": [f"doc-{i}" for i in range(n)],
            "when": [datetime.date(2024, 1, 1 + i % 28) for i in range(n)],
        }
    )
    path = tmp_path / "a.parquet"
    pq.write_table(table, path, row_group_size=100)
    docs, tally = read(path)
    assert len(docs) == n - 1
    assert (docs[0].id, docs[0].text, docs[0].meta) == (f"{path}:1", "段落 0", {"id": "doc-0", "when": "2024-01-01"})
    assert docs[-1].id == f"{path}:{n}"
    assert messages(tally) == [(8, "missing text field: 'text' is null, not a string")]
    docs, _ = read(path, id_field="id")
    assert docs[1].id == "doc-1"


def test_parquet_problems(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"body": ["x"]}), path)
    assert messages(read(path)[1]) == [(None, "missing text field: no column 'text' in the file")]
    pq.write_table(pa.table({"content": [b"bin \xff"]}), path)
    docs, tally = read(path)
    assert [d.text for d in docs] == ["bin \ufffd"]
    assert messages(tally) == [(1, "invalid utf-8: byte 0xff at offset 4")]
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), path)
    assert messages(read(path)[1]) == [(None, "empty file")]
    path.write_bytes(b"PAR1 this is not parquet")
    docs, tally = read(path)
    assert docs == [] and tally.problems[0].message.startswith("unreadable parquet: ")


# ---------------------------------------------------------------- HTML


def test_html_main_text_and_title(tmp_path: Path) -> None:
    paragraphs = [
        "The committee met on Tuesday to discuss the new proposal for the city library, "
        "which would extend opening hours into the evening.",
        "Several members argued that the budget could absorb the extra staff costs if the "
        "renovation of the east wing were postponed by a year.",
    ]
    page = (
        "<html><head><title>Library hours</title><style>p{color:red}</style></head><body>"
        "<nav><a href='/'>Home</a> <a href='/about'>About</a></nav>"
        "<article><h1>Library to open later</h1>" + "".join(f"<p>{p}</p>" for p in paragraphs) + "</article>"
        "<script>var tracking = 1;</script><footer>© 2024 Example News</footer></body></html>"
    )
    path = tmp_path / "page.html"
    path.write_text(page)
    docs, tally = read(path)
    assert len(docs) == 1 and tally.problems == []
    assert all(p in docs[0].text for p in paragraphs)
    assert "tracking" not in docs[0].text and "color" not in docs[0].text
    assert docs[0].meta["title"] in ("Library hours", "Library to open later")
    assert docs[0].id == str(path)


def test_html_declared_charset_and_plain_fallback(tmp_path: Path) -> None:
    path = tmp_path / "gbk.htm"
    page = (
        '<html><head><meta charset="gb2312"><title>新闻标题</title></head>'
        "<body><p>北京今天晴，气温二十度。</p></body></html>"
    )
    path.write_bytes(page.encode("gbk"))
    docs, tally = read(path)
    assert [(d.text, d.meta) for d in docs] == [("北京今天晴，气温二十度。", {"title": "新闻标题"})]
    assert tally.problems == []


def test_html_plain_fallback_keeps_text_of_tiny_pages() -> None:
    from puyu.data.readers.whole_files import _parse_page, _plain_page_text

    text, title = _plain_page_text(
        _parse_page(
            "<?xml version='1.0' encoding='utf-8'?><html><head><title> A  page </title><script>x()</script></head>"
            "<body><div>one</div><div>two <b>bold</b></div><!-- comment --><ul><li>a</li><li>b</li></ul></body></html>"
        )
    )
    assert (text, title) == ("one\ntwo bold\na\nb", "A page")


def test_html_without_text_and_broken_utf8(tmp_path: Path) -> None:
    path = tmp_path / "blank.html"
    path.write_text("<html><body><script>only()</script><img src='x.png'></body></html>")
    docs, tally = read(path)
    assert docs == [] and messages(tally) == [(None, "no text: the page has no readable text")]
    path.write_bytes(b"<html><body><p>Caf\xe9 au lait is served all day in the cafe.</p></body></html>")
    docs, tally = read(path)
    assert "Caf\ufffd au lait" in docs[0].text
    assert [m for _, m in messages(tally)] == ["invalid utf-8: byte 0xe9 at offset 18"]


# ---------------------------------------------------------------- PDF


def test_pdf_pages_are_joined(tmp_path: Path) -> None:
    path = tmp_path / "a.pdf"
    path.write_bytes(make_pdf(["First page text", "Second page text"]))
    docs, tally = read(path)
    assert [(d.id, d.text, d.meta) for d in docs] == [(str(path), "First page text\n\nSecond page text", {"pages": 2})]
    assert tally.docs["read/ok"] == 1 and tally.problems == []


def test_pdf_encrypted_corrupt_and_empty(tmp_path: Path) -> None:
    locked = tmp_path / "locked.pdf"
    locked.write_bytes(encrypted_pdf("secret"))
    assert messages(read(locked)[1]) == [(None, "unreadable pdf: encrypted with a password")]
    # Encrypted with only an owner password: readable without one.
    open_pdf = tmp_path / "open.pdf"
    open_pdf.write_bytes(encrypted_pdf(""))
    assert [d.text for d in read(open_pdf)[0]] == ["locked text"]
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4\nnot really a pdf")
    docs, tally = read(broken)
    assert docs == [] and tally.problems[0].message.startswith("unreadable pdf: ")
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    assert messages(read(empty)[1]) == [(None, "empty file")]
    blank = tmp_path / "blank.pdf"
    blank.write_bytes(make_pdf([""]))
    assert messages(read(blank)[1]) == [(None, "no text: the PDF has no text layer (scanned pages need OCR)")]


def test_file_removed_before_reading_is_a_problem(tmp_path: Path) -> None:
    docs, tally = read(tmp_path / "gone.txt")
    assert docs == [] and tally.problems[0].message.startswith("unreadable file: ")
