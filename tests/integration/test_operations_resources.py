"""The operating resources of template.yaml (the alarm topic, the alarms, the dashboard, the retention
rules) are created on the local stack from the template, as the table and the queues are."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from mailintake.localstack import resources

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _client(stack: dict[str, str], service: str) -> Any:
    session = boto3.session.Session(aws_access_key_id=stack["AWS_ACCESS_KEY_ID"],
                                    aws_secret_access_key=stack["AWS_SECRET_ACCESS_KEY"],
                                    region_name=stack["AWS_REGION"])
    return session.client(service, endpoint_url=stack["AWS_ENDPOINT_URL"])  # type: ignore[call-overload]


def _of_type(kind: str) -> dict[str, Any]:
    template = resources.load_template(ROOT)
    return {name: res for name, res in template["Resources"].items() if res["Type"] == kind}


def test_every_alarm_of_the_template_exists_and_notifies_the_stacks_topic(stack: dict[str, str]) -> None:
    cloudwatch, sns = _client(stack, "cloudwatch"), _client(stack, "sns")
    topics = [t["TopicArn"] for t in sns.list_topics()["Topics"]]
    topic = next(t for t in topics if t.endswith(":mailintake-AlarmTopic"))
    declared = _of_type("AWS::CloudWatch::Alarm")
    assert len(declared) >= 8
    alarms = {a["AlarmName"]: a for a in cloudwatch.describe_alarms()["MetricAlarms"]}
    for logical_id, resource in declared.items():
        alarm = alarms[f"mailintake-{logical_id}"]
        props = resource["Properties"]
        assert alarm["MetricName"] == props["MetricName"] and alarm["Namespace"] == props["Namespace"]
        assert alarm["AlarmActions"] == [topic] and alarm["OKActions"] == [topic]
        assert alarm["ComparisonOperator"] == props["ComparisonOperator"]
    # The two that watch every mailbox, whatever mailboxes are added later: no Mailbox dimension.
    for name in ("MailboxesFailing", "MailboxesOverdue"):
        alarm = next(a for a in alarms.values() if a["MetricName"] == name)
        assert alarm["Dimensions"] == [{"Name": "service", "Value": "mailintake"}]
    dlq = alarms["mailintake-DeadLetterQueueNotEmptyAlarm"]
    assert dlq["Dimensions"] == [{"Name": "QueueName", "Value": "mailintake-IntakeDeadLetterQueue.fifo"}]
    stalled = alarms["mailintake-IntakeQueueStalledAlarm"]
    assert stalled["Threshold"] == 900.0


def test_no_email_is_subscribed_unless_alert_email_is_given(stack: dict[str, str]) -> None:
    sns = _client(stack, "sns")
    topic = next(t["TopicArn"] for t in sns.list_topics()["Topics"] if t["TopicArn"].endswith(":mailintake-AlarmTopic"))
    assert sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"] == []
    template = resources.load_template(ROOT)
    template["Parameters"]["AlertEmail"]["Default"] = "admin@example.org"
    assert resources.Resolver(template).condition("HasAlertEmail")


def test_the_dashboard_is_created_with_a_graph_per_concern_one_line_per_mailbox(stack: dict[str, str]) -> None:
    cloudwatch = _client(stack, "cloudwatch")
    body = json.loads(cloudwatch.get_dashboard(DashboardName="mailintake-mailboxes")["DashboardBody"])
    titles = [w["properties"]["title"] for w in body["widgets"]]
    for concern in ("fetched", "Outcomes by kind", "Failures", "Queue depth", "Arrival on the server to item"):
        assert any(concern in title for title in titles), concern
    expressions = json.dumps(body)
    assert "SEARCH('{mailintake,Mailbox" in expressions  # mailboxes added later appear by themselves
    assert "mailintake-IntakeQueue.fifo" in expressions


def test_the_bucket_keeps_mail_for_the_configured_days_old_versions_included(stack: dict[str, str]) -> None:
    s3 = _client(stack, "s3")
    rules = {r["ID"]: r for r in
             s3.get_bucket_lifecycle_configuration(Bucket=stack["MAILINTAKE_BUCKET"])["Rules"]}
    assert rules["expire-raw-messages"]["Expiration"]["Days"] == 365
    assert rules["expire-raw-messages"]["Status"] == "Enabled"
    assert rules["expire-attachments"]["Status"] == "Disabled"  # AttachmentRetentionDays 0: kept
    assert rules["expire-old-versions"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 7
    ttl = _client(stack, "dynamodb").describe_time_to_live(TableName=stack["MAILINTAKE_TABLE"])
    assert ttl["TimeToLiveDescription"]["AttributeName"] == "expires_at"
