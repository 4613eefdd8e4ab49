"""boto3 clients, made once per process (a Lambda container reuses them across invocations).

Endpoints come from boto3's own configuration (``AWS_ENDPOINT_URL`` points them at the local stack).
``client`` is typed per service through the boto3 stubs (a dev dependency, read by mypy only), so a call
with a wrong operation or parameter name fails the type check instead of a request.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any, Literal, overload

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_scheduler import EventBridgeSchedulerClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_ses import SESClient
    from mypy_boto3_sqs import SQSClient

# Standard retry mode backs off on throttling and 5xx for S3, SQS, DynamoDB alike.
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)


@overload
def client(service: Literal["s3"], region: str) -> S3Client: ...
@overload
def client(service: Literal["sqs"], region: str) -> SQSClient: ...
@overload
def client(service: Literal["dynamodb"], region: str) -> DynamoDBClient: ...
@overload
def client(service: Literal["secretsmanager"], region: str) -> SecretsManagerClient: ...
@overload
def client(service: Literal["scheduler"], region: str) -> EventBridgeSchedulerClient: ...
@overload
def client(service: Literal["ses"], region: str) -> SESClient: ...
@overload
def client(service: Literal["lambda"], region: str) -> LambdaClient: ...
@overload
def client(service: Literal["iam"], region: str) -> IAMClient: ...
@overload
def client(service: Literal["cloudformation"], region: str) -> CloudFormationClient: ...
def client(service: str, region: str) -> Any:
    return _made(service, region)


@cache  # one client per service and region for the life of the process (boto3 clients are thread-safe)
def _made(service: str, region: str) -> Any:
    return boto3.session.Session().client(service, region_name=region, config=_CONFIG)  # type: ignore[call-overload]
