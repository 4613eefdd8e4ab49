"""The local stack itself: Dovecot serves what `deliver` stored over every protocol and TLS mode, and moto
holds the template's resources as the template declares them."""

from __future__ import annotations

import imaplib
import json
import poplib
import secrets
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from mailintake.localstack import dovecot, motoserver, resources
from mailintake.localstack.dovecot import DovecotInfo

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
USER = "localstack-selftest"


@pytest.fixture(scope="module")
def mail_info() -> DovecotInfo:
    # The stack is shared with the other integration tests and `make up`, so it is left running.
    return dovecot.start(ROOT)


@pytest.fixture(scope="module")
def stack_env(mail_info: DovecotInfo) -> dict[str, str]:
    motoserver.start(ROOT)
    resources.provision(ROOT, mail_info)
    return resources.read_stack_env(ROOT)


@pytest.fixture(scope="module")
def session(stack_env: dict[str, str]) -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id=stack_env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=stack_env["AWS_SECRET_ACCESS_KEY"],
        region_name=stack_env["AWS_REGION"],
    )


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return resources.load_template(ROOT)


def _resources_of(template: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: res for name, res in template["Resources"].items() if res["Type"] == kind}


def _ca_context(info: DovecotInfo) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(info.ca_bundle))


@pytest.fixture(scope="module")
def delivered(mail_info: DovecotInfo) -> tuple[str, bytes]:
    """A password and the one message in USER's otherwise emptied INBOX."""
    password = secrets.token_urlsafe(12)
    dovecot.ensure_user(ROOT, USER, password)
    with imaplib.IMAP4(mail_info.host, mail_info.imap_port) as conn:
        conn.login(USER, password)
        _, count = conn.select("INBOX")
        if int(count[0] or 0):
            conn.store("1:*", "+FLAGS", "\\Deleted")
            conn.expunge()
    message_id = f"<{uuid.uuid4().hex}@localstack.test>"
    # A line starting with "." (POP3 dot-stuffing), 8-bit UTF-8 and a long line: all must survive.
    raw = (
        "From: Ana <ana@example.org>\r\n"
        "To: support@example.com\r\n"
        "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
        f"Message-ID: {message_id}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        "Grüße aus Köln.\r\n"
        ".a line that starts with a dot\r\n"
        "..and one with two\r\n"
        f"{'x' * 900}\r\n"
    ).encode()
    uid = dovecot.deliver(ROOT, USER, password, raw)
    assert uid is not None
    return password, raw


def _imap_read_back(conn: imaplib.IMAP4, password: str) -> bytes:
    conn.login(USER, password)
    conn.select("INBOX", readonly=True)
    typ, data = conn.fetch("1:*", "(BODY.PEEK[])")
    assert typ == "OK"
    bodies = [part[1] for part in data if isinstance(part, tuple)]
    assert len(bodies) == 1
    return bodies[0]


def test_imap_plain_reads_back_byte_for_byte(mail_info: DovecotInfo, delivered: tuple[str, bytes]) -> None:
    password, raw = delivered
    with imaplib.IMAP4(mail_info.host, mail_info.imap_port) as conn:
        assert _imap_read_back(conn, password) == raw


def test_imap_starttls_verifies_and_reads_back(mail_info: DovecotInfo, delivered: tuple[str, bytes]) -> None:
    password, raw = delivered
    with imaplib.IMAP4(mail_info.host, mail_info.imap_port) as conn:
        conn.starttls(ssl_context=_ca_context(mail_info))
        assert _imap_read_back(conn, password) == raw


def test_imaps_verifies_and_reads_back(mail_info: DovecotInfo, delivered: tuple[str, bytes]) -> None:
    password, raw = delivered
    with imaplib.IMAP4_SSL(mail_info.host, mail_info.imaps_port, ssl_context=_ca_context(mail_info)) as conn:
        assert _imap_read_back(conn, password) == raw


def test_imaps_is_rejected_without_the_ca_bundle(mail_info: DovecotInfo) -> None:
    # Proves the TLS tests above really verify the certificate.
    with pytest.raises(ssl.SSLCertVerificationError):
        imaplib.IMAP4_SSL(mail_info.host, mail_info.imaps_port, ssl_context=ssl.create_default_context())


def _pop3_read_back(conn: poplib.POP3, password: str) -> bytes:
    try:
        conn.user(USER)
        conn.pass_(password)
        count, _ = conn.stat()
        assert count == 1
        _, lines, _ = conn.retr(1)
        return b"\r\n".join(lines) + b"\r\n"
    finally:
        conn.quit()


@pytest.mark.parametrize("mode", ["plain", "stls", "pop3s"])
def test_pop3_reads_back_byte_for_byte(
    mail_info: DovecotInfo, delivered: tuple[str, bytes], mode: str
) -> None:
    password, raw = delivered
    conn: poplib.POP3
    if mode == "pop3s":
        conn = poplib.POP3_SSL(mail_info.host, mail_info.pop3s_port, context=_ca_context(mail_info))
    else:
        conn = poplib.POP3(mail_info.host, mail_info.pop3_port)
        if mode == "stls":
            conn.stls(context=_ca_context(mail_info))
    assert _pop3_read_back(conn, password) == raw


def test_deliver_into_another_folder(mail_info: DovecotInfo, delivered: tuple[str, bytes]) -> None:
    password, _ = delivered
    raw = f"Subject: archived\r\nMessage-ID: <{uuid.uuid4().hex}@t>\r\n\r\nkeep\r\n".encode()
    dovecot.deliver(ROOT, USER, password, raw, folder="Archive")
    with imaplib.IMAP4(mail_info.host, mail_info.imap_port) as conn:
        conn.login(USER, password)
        conn.select('"Archive"', readonly=True)
        _, found = conn.search(None, "HEADER", "Message-ID", raw.split(b"<")[1].split(b">")[0].decode())
        assert found[0]


def test_start_is_idempotent(mail_info: DovecotInfo, stack_env: dict[str, str]) -> None:
    started = time.monotonic()
    assert dovecot.start(ROOT) == mail_info
    assert motoserver.start(ROOT) == stack_env["AWS_ENDPOINT_URL"]
    resources.create_resources(ROOT)
    assert time.monotonic() - started < 5


def test_table_matches_template(session: boto3.session.Session, template: dict[str, Any]) -> None:
    client = session.client("dynamodb", endpoint_url=motoserver.endpoint_url())
    tables = _resources_of(template, "AWS::DynamoDB::Table")
    assert tables
    for logical_id, declared in tables.items():
        props = declared["Properties"]
        table = client.describe_table(TableName=f"mailintake-{logical_id}")["Table"]
        assert table["KeySchema"] == props["KeySchema"]
        assert {i["IndexName"] for i in table.get("GlobalSecondaryIndexes", [])} == {
            i["IndexName"] for i in props.get("GlobalSecondaryIndexes", [])
        }
        assert table["BillingModeSummary"]["BillingMode"] == props["BillingMode"]
        if "TimeToLiveSpecification" in props:
            ttl = client.describe_time_to_live(TableName=table["TableName"])["TimeToLiveDescription"]
            assert ttl["AttributeName"] == props["TimeToLiveSpecification"]["AttributeName"]


def test_bucket_matches_template(session: boto3.session.Session, template: dict[str, Any]) -> None:
    client = session.client("s3", endpoint_url=motoserver.endpoint_url())
    buckets = _resources_of(template, "AWS::S3::Bucket")
    assert buckets
    for logical_id, declared in buckets.items():
        name = f"mailintake-{logical_id}".lower()
        props = declared["Properties"]
        client.head_bucket(Bucket=name)
        if "VersioningConfiguration" in props:
            assert client.get_bucket_versioning(Bucket=name)["Status"] == "Enabled"
        if "PublicAccessBlockConfiguration" in props:
            block = client.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
            assert block == props["PublicAccessBlockConfiguration"]
        if "BucketEncryption" in props:
            rules = client.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"]
            assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def test_queues_match_template(session: boto3.session.Session, template: dict[str, Any]) -> None:
    client = session.client("sqs", endpoint_url=motoserver.endpoint_url())
    queues = _resources_of(template, "AWS::SQS::Queue")
    assert queues
    arns: dict[str, str] = {}
    attributes: dict[str, dict[Any, str]] = {}
    for logical_id, declared in queues.items():
        fifo = bool(declared["Properties"].get("FifoQueue"))
        name = f"mailintake-{logical_id}" + (".fifo" if fifo else "")
        url = client.get_queue_url(QueueName=name)["QueueUrl"]
        attributes[logical_id] = client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])[
            "Attributes"
        ]
        arns[logical_id] = attributes[logical_id]["QueueArn"]
        assert (attributes[logical_id].get("FifoQueue") == "true") == fifo
    for logical_id, declared in queues.items():
        props = declared["Properties"]
        if "VisibilityTimeout" in props:
            assert attributes[logical_id]["VisibilityTimeout"] == str(props["VisibilityTimeout"])
        if "RedrivePolicy" in props:
            declared_policy = props["RedrivePolicy"]
            policy = json.loads(attributes[logical_id]["RedrivePolicy"])
            dlq = declared_policy["deadLetterTargetArn"]["Fn::GetAtt"][0]
            assert policy["deadLetterTargetArn"] == arns[dlq]
            assert int(policy["maxReceiveCount"]) == declared_policy["maxReceiveCount"]


def test_local_moto_serves_empty_and_large_bodies_over_kept_alive_connections(
    session: boto3.session.Session, stack_env: dict[str, str]
) -> None:
    # botocore sends "Expect: 100-continue" on PutObject, even without a body (an empty attachment).
    client = session.client("s3", endpoint_url=motoserver.endpoint_url())
    bucket = stack_env["MAILINTAKE_BUCKET"]
    for key, body in (("empty", b""), ("large", b"x" * 6_000_000), ("small", b"mail")):
        client.put_object(Bucket=bucket, Key=f"probe/{key}", Body=body)
        assert client.get_object(Bucket=bucket, Key=f"probe/{key}")["Body"].read() == body
        client.delete_object(Bucket=bucket, Key=f"probe/{key}")


def test_schedule_group_and_role_exist(session: boto3.session.Session, stack_env: dict[str, str]) -> None:
    scheduler = session.client("scheduler", endpoint_url=motoserver.endpoint_url())
    assert scheduler.get_schedule_group(Name=stack_env["MAILINTAKE_SCHEDULE_GROUP"])["State"] == "ACTIVE"
    assert stack_env["MAILINTAKE_SCHEDULE_GROUP"] == "mailintake-mailboxes"
    iam = session.client("iam", endpoint_url=motoserver.endpoint_url())
    role = iam.get_role(RoleName="mailintake-SchedulerRole")["Role"]
    assert role["Arn"] == stack_env["MAILINTAKE_SCHEDULER_ROLE_ARN"]


def test_stack_env_has_every_global_variable(stack_env: dict[str, str], template: dict[str, Any]) -> None:
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert set(variables) <= set(stack_env)
    assert stack_env["MAILINTAKE_TABLE"] == "mailintake-DataTable"
    assert stack_env["MAILINTAKE_QUEUE_URL"].endswith("/mailintake-IntakeQueue.fifo")
    assert stack_env["MAILINTAKE_MARKER_FORMAT"] == str(template["Parameters"]["MarkerFormat"]["Default"])
    assert stack_env["MAILINTAKE_FETCH_FUNCTION_ARN"] == (
        "arn:aws:lambda:us-east-1:123456789012:function:mailintake-FetchFunction"
    )
    assert stack_env["AWS_ENDPOINT_URL"] == motoserver.endpoint_url()
    assert Path(stack_env["MAILINTAKE_LOCAL_CA_BUNDLE"]).is_file()
    assert int(stack_env["MAILINTAKE_LOCAL_IMAPS_PORT"]) == dovecot.IMAPS_PORT


@pytest.fixture()
def emptied_afterwards(stack_env: dict[str, str]) -> Iterator[None]:
    yield
    resources.reset(ROOT)


@pytest.mark.usefixtures("emptied_afterwards")
def test_reset_empties_but_keeps_resources(session: boto3.session.Session, stack_env: dict[str, str]) -> None:
    endpoint = motoserver.endpoint_url()
    table = session.resource("dynamodb", endpoint_url=endpoint).Table(stack_env["MAILINTAKE_TABLE"])
    s3 = session.client("s3", endpoint_url=endpoint)
    sqs = session.client("sqs", endpoint_url=endpoint)
    table.put_item(Item={"pk": "p", "sk": "s"})
    s3.put_object(Bucket=stack_env["MAILINTAKE_BUCKET"], Key="raw/x", Body=b"1")
    s3.put_object(Bucket=stack_env["MAILINTAKE_BUCKET"], Key="raw/x", Body=b"2")
    sqs.send_message(
        QueueUrl=stack_env["MAILINTAKE_QUEUE_URL"],
        MessageBody="m",
        MessageGroupId="g",
        MessageDeduplicationId="d",
    )
    resources.reset(ROOT)
    assert table.scan()["Count"] == 0
    assert not s3.list_object_versions(Bucket=stack_env["MAILINTAKE_BUCKET"]).get("Versions")
    assert "Messages" not in sqs.receive_message(QueueUrl=stack_env["MAILINTAKE_QUEUE_URL"])
    assert resources.read_stack_env(ROOT)["MAILINTAKE_QUEUE_URL"] == stack_env["MAILINTAKE_QUEUE_URL"]


def test_loader_reads_short_tags() -> None:
    import yaml

    text = "a: !Ref P\nb: !GetAtt Q.Arn\nc: !Sub '${AWS::StackName}-x'\nd: !Join [',', [!Ref P, z]]\n"
    data = yaml.load(text, Loader=resources.CfnLoader)
    assert data["a"] == {"Ref": "P"}
    assert data["b"] == {"Fn::GetAtt": ["Q", "Arn"]}
    template = {"Parameters": {"P": {"Default": "v"}}, "Resources": {}}
    resolver = resources.Resolver(template)
    assert resolver.resolve(data["c"]) == "mailintake-x"
    assert resolver.resolve(data["d"]) == "v,z"


def test_cancelled_transaction_changes_nothing(session: boto3.session.Session, stack_env: dict[str, str]) -> None:
    """The launcher's cheaper transaction rollback keeps moto's all-or-nothing behaviour."""
    ddb = session.client("dynamodb", endpoint_url=motoserver.endpoint_url())
    table = stack_env["MAILINTAKE_TABLE"]
    tag = uuid.uuid4().hex
    existing = {"pk": {"S": f"T#{tag}#old"}, "sk": {"S": "X"}, "value": {"N": "1"}}
    ddb.put_item(TableName=table, Item=existing)

    with pytest.raises(ddb.exceptions.TransactionCanceledException):
        ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": table, "Item": {"pk": {"S": f"T#{tag}#new"}, "sk": {"S": "X"}}}},
            {"Update": {"TableName": table, "Key": {"pk": existing["pk"], "sk": existing["sk"]},
                        "UpdateExpression": "SET #v = :two", "ExpressionAttributeNames": {"#v": "value"},
                        "ExpressionAttributeValues": {":two": {"N": "2"}}}},
            {"Put": {"TableName": table, "Item": {"pk": {"S": f"T#{tag}#guard"}, "sk": {"S": "X"}},
                     "ConditionExpression": "attribute_exists(pk)"}},
        ])

    assert "Item" not in ddb.get_item(TableName=table, Key={"pk": {"S": f"T#{tag}#new"}, "sk": {"S": "X"}})
    after = ddb.get_item(TableName=table, Key={"pk": existing["pk"], "sk": existing["sk"]})["Item"]
    assert after == existing
