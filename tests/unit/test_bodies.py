"""Fitting items and comments under DynamoDB's item limit: the size rule and the previews, no stack."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mailintake import bodies
from mailintake.store import ITEM_LIMIT_BYTES, AttachmentMap, CommentRecord, ItemRecord, item_size

NOW = datetime(2026, 11, 24, 9, 12, tzinfo=UTC)


def item(description: str, html: str | None = None, title: str = "Printer jams", attachments: int = 0) -> ItemRecord:
    return ItemRecord("ITEM#0000000001", "ITEM", kind="item", sort="ITEM#0000000001", number=1, title=title,
                      description=description, html=html, author="ada@example.org", workspace="default",
                      created=NOW, message_id="m@example.org", source_key="raw/box/1.eml", mailbox="box",
                      attachments=[AttachmentMap(filename=  # type: ignore[no-untyped-call]
                                                 f"file-{n}.bin" + "x" * 200, content_type="image/png",
                                                 size=10, key="attachments/abc/" + "k" * 200)
                                   for n in range(attachments)])


def comment(text: str, full_text: str, html: str | None = None) -> CommentRecord:
    return CommentRecord("ITEM#0000000001", "COMMENT#x", item_number=1, text=text, full_text=full_text, html=html,
                         author="ada@example.org", created=NOW, message_id="r@example.org",
                         source_key="raw/box/2.eml", mailbox="box")


def test_item_size_counts_every_attribute_name_and_value() -> None:
    small = item("")
    assert item_size(item("x" * 1000)) - item_size(small) == 1000
    assert item_size(item("\u00e9" * 1000)) - item_size(small) == 2000  # UTF-8 bytes, not characters
    assert item_size(item("", html="<p>")) - item_size(small) == len("html") + 3


def test_preview_is_bounded_in_bytes_and_cut_at_a_character() -> None:
    assert bodies.preview("short") == "short"
    cut = bodies.preview("\u00e9" * 100, 51)
    assert cut == "\u00e9" * 25 and len(cut.encode()) <= 51


def test_a_record_that_fits_is_left_alone() -> None:
    record = item("x" * 300_000)
    assert bodies.shrink(record, "bodies/k.json") is None
    assert record.body_key is None and len(record.description) == 300_000


@pytest.mark.parametrize(("text", "html"), [(400_000, None), (250_000, 250_000), (5_000_000, 10_000_000)])
def test_a_record_over_the_budget_keeps_previews_and_names_its_whole_texts(text: int, html: int | None) -> None:
    record = item("t" * text, html="h" * html if html else None, title="T" * 5000)
    whole = bodies.shrink(record, "bodies/k.json")
    assert whole is not None and whole["description"] == "t" * text and whole["title"] == "T" * 5000
    assert whole.get("html") == ("h" * html if html else None)
    assert record.body_key == "bodies/k.json" and record.html is None
    assert len(record.description.encode()) == bodies.PREVIEW_BYTES and len(record.title) == 1000
    assert item_size(record) <= bodies.BUDGET_BYTES < ITEM_LIMIT_BYTES


def test_a_comment_whose_reply_is_all_of_it_stores_the_text_once() -> None:
    record = comment("c" * 300_000, "c" * 300_000)
    whole = bodies.shrink(record, "bodies/k.json")
    assert whole == {"full_text": "c" * 300_000}
    assert record.text == record.full_text == "c" * bodies.PREVIEW_BYTES
    other = comment("reply", "r" * 500_000, html="<p>" * 10)
    assert bodies.shrink(other, "bodies/k.json") == {"full_text": "r" * 500_000, "text": "reply", "html": "<p>" * 10}


def test_a_record_too_large_without_its_texts_is_refused() -> None:
    with pytest.raises(bodies.StillTooLarge):
        bodies.shrink(item("x" * 500_000, attachments=2000), "bodies/k.json")


def test_the_key_is_derived_from_the_raw_mail() -> None:
    assert bodies.key_for("raw/a/1.eml") == bodies.key_for("raw/a/1.eml") != bodies.key_for("raw/a/2.eml")
    assert bodies.key_for("raw/a/1.eml").startswith("bodies/")


@pytest.mark.parametrize("text", ["", "plain", "caf\u00e9 \"quoted\" \\ back\nslash\t\u2028 \x00 \U0001f600",
                                  "\udce9 lone surrogate \ud83d", ("x\u00e9\"\n\udcff" * 70_000)])
def test_the_whole_texts_are_written_as_json_dumps_writes_them(text: str) -> None:
    import io
    import json

    whole = {"description": text, "html": "<p>" + text[:10]}
    out = io.BytesIO()
    bodies.write_json(out, "raw/box/\u00e9.eml", whole)
    expected = json.dumps({"format": bodies.FORMAT, "source_key": "raw/box/\u00e9.eml", "texts": whole},
                          ensure_ascii=False).encode("utf-8", "surrogatepass")
    assert out.getvalue() == expected


@pytest.mark.parametrize("text", ["", "\u00e9" * 20, "a" * 200, "\u00e9" * 200, "a" * 99 + "\u00e9" * 3,
                                  "\U0001f600" * 40, "\udce9" * 60])
@pytest.mark.parametrize("limit", [1, 51, 100, 101, 160])
def test_preview_is_the_start_of_the_utf8_encoding(text: str, limit: int) -> None:
    data = text.encode("utf-8", "surrogatepass")
    expected = text if len(data) <= limit else data[:limit].decode("utf-8", "ignore")
    assert bodies.preview(text, limit) == expected


def test_utf8_size_is_the_encoded_length() -> None:
    from mailintake.store import utf8_size

    for text in ["", "ascii", "\u00e9\U0001f600\udce9", "x\u00e9" * 100_000]:
        assert utf8_size(text) == len(text.encode("utf-8", "surrogatepass"))
