"""Start moto's server with two fixes that keep its behaviour but stop its costs growing with its data.

- DynamoDB: moto (5.2) makes TransactWriteItems all-or-nothing by deep-copying every table the
  transaction names, once per operation, before applying it. Each of this project's item writes is a
  four-operation transaction, so every write copied the whole table four times and ingesting a mailbox
  got slower with every item (45 ms per write at 300 records). Here only the items the transaction
  touches are snapshotted, and put back if it is cancelled. The all-or-nothing behaviour is covered by
  tests/integration/test_localstack.py. Transactions run one at a time: moto checks and applies them
  without a lock, and with two server threads a cancelled transaction's put-back could undo another's
  committed writes (two processes taking item numbers at once then found the counter behind an item
  that existed, and retried one number until they gave up).
- S3: moto's data API (``/moto-api/data.json``, where the tests read the mail SES sent) reads every
  object's restore status, which "completes" on its first read and then looks up the object's bucket.
  The parts of a multipart upload (mails over 8 MiB) are objects without a bucket: after the first large
  mail the data API answered 500 for the rest of the server's life. Restores are never made here, so
  their status is held where it starts.
- SQS: every send reads the queue's attributes, which count visible and delayed messages, and each
  message's visibility check built two datetimes (about 10 us): 0.3 s per batch sent to a queue of 500.
  Here the check compares epoch milliseconds directly, as moto's own arithmetic does. And moto built every
  attribute (three of them counting the queue's messages) to read any one: each message sent read
  ContentBasedDeduplication, and each message received read MessageRetentionPeriod, so a queue of n
  messages cost O(n) per message both ways (12 % of the server's time ingesting 300 mails). Here the
  attributes are a mapping that works out each one when it is read.

    python -m mailintake.localstack.moto_launch -H 127.0.0.1 -p 5055
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from types import SimpleNamespace
from typing import Any

import moto.backends as moto_backends
import moto.dynamodb.models as dynamodb_models
from moto.core.utils import camelcase_to_underscores
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.moto_api import state_manager
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.sqs.models import Message as SqsMessage
from moto.sqs.models import Queue as SqsQueue


def _table_snapshot_free_deepcopy(obj: Any, memo: Any = None) -> Any:
    # The module-wide snapshot of a whole table is what we replace; every other deepcopy stays real.
    return obj if isinstance(obj, Table) else copy.deepcopy(obj, memo)


_original = DynamoDBBackend.transact_write_items


def _key_of(backend: DynamoDBBackend, op_type: str, op: dict[str, Any]) -> tuple[Table, DynamoType, Any] | None:
    table = backend.tables.get(op.get("TableName", ""))
    if table is None:
        return None
    attrs = op["Item"] if op_type == "Put" else op.get("Key", {})
    if table.hash_key_attr not in attrs:
        return None
    hash_value = DynamoType(attrs[table.hash_key_attr])
    range_value = DynamoType(attrs[table.range_key_attr]) if table.range_key_attr in attrs else None
    return table, hash_value, range_value


_one_transaction_at_a_time = threading.Lock()


def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    with _one_transaction_at_a_time:
        _transact_write_items(self, transact_items)


def _transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    touched = []
    for entry in transact_items:
        for op_type, op in entry.items():
            key = _key_of(self, op_type, op)
            if key is not None:
                table, hash_value, range_value = key
                touched.append((table, hash_value, range_value,
                                copy.deepcopy(table.get_item(hash_value, range_value))))
    try:
        _original(self, transact_items)
    except Exception:
        for table, hash_value, range_value, before in reversed(touched):
            if before is None:
                table.delete_item(hash_value, range_value)
            elif range_value is not None:
                table.items[hash_value][range_value] = before
            else:
                table.items[hash_value] = before
        raise


def _visible(self: SqsMessage) -> bool:
    return time.time() * 1000.0 > self.visible_at


def _delayed(self: SqsMessage) -> bool:
    return time.time() * 1000.0 < self.delayed_until


class _QueueAttributes(Mapping[str, Any]):
    """moto's ``Queue.attributes`` (5.2), each worked out when it is read: the same names, values and order."""

    def __init__(self, queue: SqsQueue) -> None:
        self._queue = queue
        names = list(queue.BASE_ATTRIBUTES)
        if queue.fifo_queue:
            names += queue.FIFO_ATTRIBUTES
        if getattr(queue, "kms_master_key_id", None):  # set from the attributes, not declared
            names += queue.KMS_ATTRIBUTES
        self._names = names

    def __getitem__(self, name: str) -> Any:
        if name not in self._names:
            raise KeyError(name)
        queue = self._queue
        if name == "Policy" and queue.policy:
            return queue.policy
        if name == "RedrivePolicy" and queue.redrive_policy:
            return json.dumps(queue.redrive_policy)
        value = getattr(queue, camelcase_to_underscores(name))
        return str(value).lower() if isinstance(value, bool) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def _queue_attributes(self: SqsQueue) -> dict[str, Any] | Mapping[str, Any]:
    return _QueueAttributes(self)


def install() -> None:
    # Every request looked up the service by listing moto's package directory (about 200 stat calls).
    moto_backends.list_of_moto_modules = functools.cache(
        lambda original=moto_backends.list_of_moto_modules: tuple(original()))
    dynamodb_models.copy = SimpleNamespace(deepcopy=_table_snapshot_free_deepcopy)  # type: ignore[attr-defined,assignment]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    SqsMessage.visible = property(_visible)  # type: ignore[assignment,method-assign]
    SqsMessage.delayed = property(_delayed)  # type: ignore[assignment,method-assign]
    SqsQueue.attributes = property(_queue_attributes)  # type: ignore[assignment,method-assign]
    # "manual" progression advances only after this many explicit advances, which nothing makes.
    state_manager.set_transition("s3::keyrestore", {"progression": "manual", "times": sys.maxsize})


def _no_continue_without_body(parse_header: Any) -> Any:
    """waitress (3.0) answers ``Expect: 100-continue`` on a request without a body (botocore sends one
    for an empty PutObject) and then marks the already complete request incomplete, so it is never
    served. With nothing to send, there is nothing to continue: drop the expectation."""

    def parse(self: Any, header_plus: bytes) -> None:
        parse_header(self, header_plus)
        if self.expect_continue and not self.chunked and not self.content_length:
            self.expect_continue = False

    return parse


def serve(host: str, port: int) -> None:
    """moto's own WSGI application, served by waitress instead of werkzeug's development server.

    Werkzeug's server closes the connection after every response and starts a thread per connection,
    so each AWS call paid for a TCP connect and a thread; waitress keeps connections alive and serves
    them from a fixed pool of threads. Two: one more only contends for the interpreter lock (one is about
    3 % faster still), but with one, a client's long-polling ReceiveMessage would stall every other call.
    """
    import waitress
    from waitress.parser import HTTPRequestParser

    HTTPRequestParser.parse_header = _no_continue_without_body(HTTPRequestParser.parse_header)
    os.environ.setdefault("MOTO_PORT", str(port))  # moto builds some URLs (SQS queue URLs) from it
    app = DomainDispatcherApplication(create_backend_app)
    waitress.serve(app, host=host, port=port, threads=2, ident="moto", _quiet=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="moto's server, with mailintake's fixes")
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args()
    install()
    serve(args.host, args.port)


if __name__ == "__main__":
    main()
