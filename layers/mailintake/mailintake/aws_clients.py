"""boto3 clients, made once per process (a Lambda container reuses them across invocations).

Endpoints come from boto3's own configuration (``AWS_ENDPOINT_URL`` points them at the local stack).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

# Standard retry mode backs off on throttling and 5xx for S3, SQS, DynamoDB alike.
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)


@cache
def client(service: str, region: str) -> Any:
    return boto3.session.Session().client(service, region_name=region, config=_CONFIG)  # type: ignore[call-overload]
