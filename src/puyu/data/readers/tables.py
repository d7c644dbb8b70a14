"""CSV and Parquet files: one document per row, with the text in one column and the other columns as meta."""

from __future__ import annotations

import csv
import datetime
import decimal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...errors import one_line
from ..document import Document, Tally
from .json_records import record_to_document, text_keys
from .streams import decode_utf8, iter_lines, open_binary

# Rows are converted to Python a batch at a time; small batches bound memory when documents are long.
PARQUET_BATCH_ROWS = 256
# csv's default field limit (128 KiB) would turn every long document into an error.
_CSV_FIELD_LIMIT = 2**31 - 1


def _text_column(columns: list[str], text_field: str) -> str | None:
    return next((key for key in text_keys(text_field) if key in columns), None)


def read_csv(path: Path, tally: Tally, text_field: str, id_field: str | None) -> Iterator[Document]:
    """One document per row of a CSV file with a header row; the id is "<path>:<line the row starts on>"."""
    source = str(path)
    csv.field_size_limit(_CSV_FIELD_LIMIT)
    with open_binary(path) as stream:
        reader = csv.reader(line for _, line in iter_lines(stream, tally, source))
        try:
            header = next(reader)
        except StopIteration:
            tally.problem(source, None, "empty file")
            return
        except csv.Error as exc:
            tally.problem(source, 1, f"malformed csv: {one_line(exc)}")
            return
        key = _text_column(header, text_field)
        if key is None:
            tally.problem(source, 1, f"missing text field: no column {text_field!r} in the header")
            return
        rows = 0
        start = reader.line_num + 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                tally.problem(source, start, f"malformed csv: {one_line(exc)}")
                start = reader.line_num + 1
                continue
            line, start = start, reader.line_num + 1
            if not row:  # a blank line
                continue
            rows += 1
            # A short row lacks its trailing columns (and, maybe, the text, which is then a problem).
            record: dict[str, Any] = {name: row[i] for i, name in enumerate(header) if i < len(row)}
            if len(row) > len(header):
                record["extra_fields"] = row[len(header) :]
            doc = record_to_document(
                record,
                source=source,
                default_id=f"{source}:{line}",
                line=line,
                text_field=text_field,
                id_field=id_field,
                tally=tally,
            )
            if doc is not None:
                yield doc
        if rows == 0:
            tally.problem(source, None, "empty file: a header and no rows")


def _json_safe(value: Any) -> Any:
    """Parquet values as JSON types, so meta can be written out (dates and decimals become strings)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, datetime.timedelta)):
        return str(value)
    return str(value)


def read_parquet(path: Path, tally: Tally, text_field: str, id_field: str | None) -> Iterator[Document]:
    """One document per row of a Parquet file, read in record batches; the id is "<path>:<1-based row>"."""
    import pyarrow as pa  # imported here: pyarrow takes a while to load and only Parquet needs it
    import pyarrow.parquet as pq

    source = str(path)
    try:
        table = pq.ParquetFile(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        tally.problem(source, None, f"unreadable parquet: {one_line(exc)}")
        return
    key = _text_column(table.schema_arrow.names, text_field)
    if key is None:
        tally.problem(source, None, f"missing text field: no column {text_field!r} in the file")
        return
    if table.metadata.num_rows == 0:
        tally.problem(source, None, "empty file")
        return
    number = 0
    try:
        for batch in table.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            for row in batch.to_pylist():
                number += 1
                if isinstance(row.get(key), bytes):  # a binary column: text stored as raw bytes
                    row[key] = decode_utf8(row[key], tally, source, number)
                record = {name: (value if name == key else _json_safe(value)) for name, value in row.items()}
                doc = record_to_document(
                    record,
                    source=source,
                    default_id=f"{source}:{number}",
                    line=number,
                    text_field=text_field,
                    id_field=id_field,
                    tally=tally,
                )
                if doc is not None:
                    yield doc
    except (OSError, ValueError, pa.ArrowException) as exc:
        tally.problem(source, number + 1, f"unreadable parquet: {one_line(exc)}")
