"""Start moto's server with two fixes that keep its behaviour but stop its costs growing with its data.

- DynamoDB: moto (5.2) makes TransactWriteItems all-or-nothing by deep-copying every table the
  transaction names, once per operation, before applying it. Each of this project's item writes is a
  four-operation transaction, so every write copied the whole table four times and ingesting a mailbox
  got slower with every item (45 ms per write at 300 records). Here only the items the transaction
  touches are snapshotted, and put back if it is cancelled. The all-or-nothing behaviour is covered by
  tests/integration/test_localstack.py.
- SQS: every send reads the queue's attributes, which count visible and delayed messages, and each
  message's visibility check built two datetimes (about 10 us): 0.3 s per batch sent to a queue of 500.
  Here the check compares epoch milliseconds directly, as moto's own arithmetic does.

    python -m mailintake.localstack.moto_launch -H 127.0.0.1 -p 5055
"""

from __future__ import annotations

import copy
import sys
import time
from types import SimpleNamespace
from typing import Any

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.server import main as moto_main
from moto.sqs.models import Message as SqsMessage


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


def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
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


def install() -> None:
    dynamodb_models.copy = SimpleNamespace(deepcopy=_table_snapshot_free_deepcopy)  # type: ignore[assignment]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    SqsMessage.visible = property(_visible)  # type: ignore[assignment,method-assign]
    SqsMessage.delayed = property(_delayed)  # type: ignore[assignment,method-assign]


if __name__ == "__main__":
    install()
    moto_main(sys.argv[1:])
