from __future__ import annotations

from mailintake.settings import DEFAULT_MARKER, Settings


def test_settings_are_read_from_mailintake_variables_with_types() -> None:
    settings = Settings.from_mapping({
        "MAILINTAKE_TABLE": "t", "MAILINTAKE_MAX_MESSAGE_BYTES": "1024", "AWS_REGION": "eu-west-1",
    })
    assert (settings.table, settings.max_message_bytes, settings.region) == ("t", 1024, "eu-west-1")
    assert settings.marker_format == DEFAULT_MARKER


def test_empty_variables_keep_the_defaults() -> None:
    assert Settings.from_mapping({"MAILINTAKE_MARKER_FORMAT": ""}).marker_format == DEFAULT_MARKER
