from __future__ import annotations

import pytest

from mailintake.settings import DEFAULT_MARKER, Settings, SettingsError

STACK = {"MAILINTAKE_TABLE": "t", "MAILINTAKE_BUCKET": "b", "MAILINTAKE_QUEUE_URL": "https://sqs/q.fifo"}


def test_settings_are_read_from_mailintake_variables_with_types() -> None:
    settings = Settings.from_mapping({**STACK, "MAILINTAKE_MAX_MESSAGE_BYTES": "1024", "AWS_REGION": "eu-west-1"})
    assert (settings.table, settings.max_message_bytes, settings.region) == ("t", 1024, "eu-west-1")
    assert settings.marker_format == DEFAULT_MARKER


def test_empty_optional_variables_keep_the_defaults() -> None:
    assert Settings.from_mapping({**STACK, "MAILINTAKE_MARKER_FORMAT": ""}).marker_format == DEFAULT_MARKER


def test_a_missing_table_bucket_or_queue_stops_start_up_naming_each_variable() -> None:
    with pytest.raises(SettingsError) as error:
        Settings.from_mapping({"MAILINTAKE_TABLE": "t", "MAILINTAKE_QUEUE_URL": ""})
    message = str(error.value)
    assert "MAILINTAKE_BUCKET is not set" in message and "MAILINTAKE_QUEUE_URL is not set" in message
    assert "MAILINTAKE_TABLE" not in message


def test_a_number_that_is_not_one_stops_start_up_with_its_value() -> None:
    with pytest.raises(SettingsError, match=r"MAILINTAKE_MAX_MESSAGE_BYTES='25MB' is not an integer"):
        Settings.from_mapping({**STACK, "MAILINTAKE_MAX_MESSAGE_BYTES": "25MB"})
    with pytest.raises(SettingsError, match=r"MAILINTAKE_PROCESSING_BUDGET_SECONDS='0' must be above 0"):
        Settings.from_mapping({**STACK, "MAILINTAKE_PROCESSING_BUDGET_SECONDS": "0"})
    assert Settings.from_mapping({**STACK, "MAILINTAKE_CONFIG_CACHE_SECONDS": "0"}).config_cache_seconds == 0
