"""Least privilege and data protection, read from template.yaml: no wildcard action or resource where a
narrower one exists, each function's grants on its own resources only, the bucket private and encrypted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailintake.localstack.resources import load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template(ROOT)
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]

# SAM policy templates each function may use, and the one resource of this stack each must name.
ALLOWED_TEMPLATES = {
    "FetchFunction": {"DynamoDBCrudPolicy": "DataTable", "SQSSendMessagePolicy": "IntakeQueue"},
    "ProcessFunction": {"DynamoDBCrudPolicy": "DataTable"},
}

# Wildcards that stay, with the reason none narrower exists. Keyed by (resource, action).
JUSTIFIED_WILDCARDS: dict[tuple[str, str], str | tuple[str, ...]] = {
    # reply.from (and admin.address) are runtime settings: which verified SES identity sends is not
    # known when the stack is deployed. Scoped to this account and region's identities.
    ("FetchFunction", "ses:SendRawEmail"): ":identity/*",
    ("ProcessFunction", "ses:SendRawEmail"): ":identity/*",
    # Mailbox secrets are made at runtime (`mailintake mailbox add`), one per mailbox, under a prefix.
    ("FetchFunction", "secretsmanager:GetSecretValue"): ":secret:mailintake/*",
    # The process function reads only the SMTP credentials for replies, under their own prefix, and the
    # OAuth mailbox's secret whose token signs in to SMTP (reply.smtpMailbox).
    ("ProcessFunction", "secretsmanager:GetSecretValue"): (":secret:mailintake/smtp/*", ":secret:mailintake/mailbox/*"),
    # A rotated OAuth refresh token is written back to its mailbox's secret (mailintake.tokens).
    ("FetchFunction", "secretsmanager:PutSecretValue"): ":secret:mailintake/mailbox/*",
    ("ProcessFunction", "secretsmanager:PutSecretValue"): ":secret:mailintake/mailbox/*",
    # Object keys are made at runtime; each function gets only its own prefix of the bucket.
    ("FetchFunction", "s3:PutObject"): "/raw/*",
    ("ProcessFunction", "s3:GetObject"): "/raw/*",
    ("ProcessFunction", "s3:PutObject"): ("/attachments/*", "/bodies/*"),
}


def _flatten(value: Any) -> str:
    """A policy value (string, Ref, GetAtt, Sub) as text, for pattern checks."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        if "Fn::Sub" in value:
            sub = value["Fn::Sub"]
            return sub if isinstance(sub, str) else str(sub[0])
        if "Ref" in value:
            return f"${{{value['Ref']}}}"
        if "Fn::GetAtt" in value:
            return "${" + ".".join(value["Fn::GetAtt"]) + "}"
    return str(value)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every inline IAM statement: of functions' Policies and of roles' policy documents."""
    for name, resource in RESOURCES.items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            for policy in props.get("Policies", []):
                if isinstance(policy, dict) and "Statement" in policy:
                    for statement in policy["Statement"]:
                        yield name, statement
        elif resource["Type"] == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                for statement in policy["PolicyDocument"]["Statement"]:
                    yield name, statement


def test_template_has_the_policies_this_test_reads() -> None:
    owners = {name for name, _ in statements()}
    assert {"FetchFunction", "ProcessFunction", "SchedulerRole"} <= owners


def test_no_allow_statement_has_a_wildcard_action_or_resource() -> None:
    for owner, statement in statements():
        if statement.get("Effect") != "Allow":
            continue
        for action in _as_list(statement["Action"]):
            assert action != "*" and not str(action).endswith(":*"), f"{owner}: action {action}"
        for resource in _as_list(statement["Resource"]):
            text = _flatten(resource)
            assert text != "*", f"{owner}: Resource * for {statement['Action']}"
            assert text.startswith("arn:${AWS::Partition}:") or text.startswith("${"), f"{owner}: {text}"
            if text.endswith("*"):
                # A prefix wildcard only where it is listed with its reason, and no wider than listed.
                for action in _as_list(statement["Action"]):
                    allowed = JUSTIFIED_WILDCARDS.get((owner, action))
                    assert allowed is not None and text.endswith(allowed), f"{owner}: {action} on {text}"
            # Scoped to this account and region (or to a resource of this stack).
            if text.startswith("arn:"):
                assert "${AWS::AccountId}" in text and "${AWS::Region}" in text, f"{owner}: {text}"


def test_each_function_uses_only_its_policy_templates_on_its_own_resources() -> None:
    for name, allowed in ALLOWED_TEMPLATES.items():
        used = {}
        for policy in RESOURCES[name]["Properties"]["Policies"]:
            if isinstance(policy, str):
                pytest.fail(f"{name}: managed policy {policy} (broader than this stack)")
            for template, args in policy.items():
                if template == "Statement":
                    continue
                (target,) = [v for v in args.values()]
                used[template] = _flatten(target).strip("${}").split(".")[0]
        assert used == allowed, name


def test_scheduler_role_may_only_invoke_the_fetch_function_from_this_account() -> None:
    role = RESOURCES["SchedulerRole"]["Properties"]
    ((statement,),) = [p["PolicyDocument"]["Statement"] for p in role["Policies"]]
    assert statement["Action"] == "lambda:InvokeFunction"
    assert statement["Resource"] == {"Fn::GetAtt": ["FetchFunction", "Arn"]}
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    # Confused deputy: only schedules of this account may use the role.
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


def test_no_function_can_delete_or_list_stored_mail() -> None:
    for name in ("FetchFunction", "ProcessFunction"):
        templates = {k for p in RESOURCES[name]["Properties"]["Policies"] for k in p}
        assert not templates & {"S3CrudPolicy", "S3FullAccessPolicy", "S3WritePolicy"}, name
        actions = {a for p in RESOURCES[name]["Properties"]["Policies"] for st in p.get("Statement", [])
                   for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])}
        assert not {a for a in actions if a.startswith("s3:") and a not in ("s3:GetObject", "s3:PutObject")}, name


def test_bucket_is_private_encrypted_tls_only_and_expires_raw_mail() -> None:
    bucket = RESOURCES["MailBucket"]["Properties"]
    block = bucket["PublicAccessBlockConfiguration"]
    assert block == {"BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True,
                     "RestrictPublicBuckets": True}
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert bucket["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]  # no ACLs
    (deny,) = RESOURCES["MailBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    # The one "*" in the template: a Deny of any access without TLS, which is the point of it.
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    rules = bucket["LifecycleConfiguration"]["Rules"]
    assert any(r["Prefix"] == "raw/" and r["ExpirationInDays"] == {"Ref": "RawRetentionDays"} for r in rules)


def test_queues_and_table_are_encrypted_at_rest() -> None:
    for name in ("IntakeQueue", "IntakeDeadLetterQueue"):
        assert RESOURCES[name]["Properties"]["SqsManagedSseEnabled"] is True, name
    assert RESOURCES["DataTable"]["Properties"]["SSESpecification"] == {"SSEEnabled": True}
    redrive = RESOURCES["IntakeQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["IntakeDeadLetterQueue", "Arn"]}
