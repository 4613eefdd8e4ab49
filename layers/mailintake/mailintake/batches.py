"""A batch of intake-queue messages, as the process function receives it: each mail judged in order, the
items and comments of the batch written together.

Writing each mail's item in a transaction of its own was most of the process function's requests and time
(one TransactWriteItems per mail, each updating the one item counter). Here the mails of a batch are
judged one after another, their attachments stored, and their records written in one transaction
(:func:`mailintake.store.write_together`): one request and one counter update for the batch; when DynamoDB
refuses it for one mail's sake (a copy stored already), each is written alone as before.

What a mail's judgement may read is written before it is judged, so batching never changes an outcome:

* a mail of a conversation that has a mail waiting is judged after that one is written (a reply finds the
  item its original just made);
* a mail from a sender who has a mail waiting, likewise: a rejection is answered as it is judged and an
  acknowledgement after the write, and the reply limits must count a sender's replies in the order of the
  mails;
* two mails naming one record (a comment on the same item, the same Message-ID) are not written together.

FIFO order is kept as Powertools' ``SqsFifoPartialProcessor(skip_group_on_error=True)`` keeps it: after a
mail fails, the rest of its message group (its conversation) is returned unprocessed, for a retry in order;
other conversations go on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mailintake.handover import QueuedMessage, key_of
from mailintake.message import ParsedMessage
from mailintake.processing import Outcome, Processor, Ready, deadline_for
from mailintake.runtime import Runtime
from mailintake.store import TOGETHER_MAX, MessageIdRecord, NewComment

# A transaction carries at most 4 MB; each record is under DynamoDB's 400 KB item limit, so this bound is
# reached only by several mails near it.
TOGETHER_MAX_BYTES = 3 * 1024 * 1024


@dataclass(frozen=True)
class QueuedRecord:
    """One message of the batch: its body, the how-many-th time it was received, its FIFO message group."""

    body: str
    attempt: int
    group: str


class BatchFailed(Exception):
    """Every record of a batch failed: the invocation fails (it counts in the function's Errors metric) and
    Lambda returns them all to the queue, as Powertools' batch processor does."""

    def __init__(self, failures: Sequence[Exception]) -> None:
        super().__init__(f"all {len(failures)} records failed; the first: {failures[0]!r}" if failures
                         else "all records failed")
        self.failures = list(failures)


class GroupSkipped(Exception):
    """Not processed: an earlier mail of its conversation failed in this batch; retried after that one."""


def process_batch(records: Sequence[QueuedRecord], runtime: Runtime, seconds_left: Callable[[], float],
                  correlate: Callable[[str], None]) -> list[Outcome | Exception]:
    """Each record's outcome, in order, or the exception for which it goes back to the queue.
    ``seconds_left`` is the invocation's remaining time; ``correlate`` is given each mail's key as the batch
    gets to it (log lines carry it)."""
    return _Batch(Processor(runtime), seconds_left, correlate).run(records)


@dataclass
class _Waiting:
    """Mails judged and ready, not yet written, and what their judgements stand on."""

    ready: list[tuple[int, str, Ready]] = field(default_factory=list)  # (index in the batch, group, mail)
    groups: set[str] = field(default_factory=set)
    senders: set[str] = field(default_factory=set)
    records: set[tuple[str, str]] = field(default_factory=set)
    size: int = 0


def _records_named(ready: Ready) -> set[tuple[str, str]]:
    """The records a mail's write names besides its own new ones: its Message-ID, the item it comments on."""
    source = ready.record.source
    named = {MessageIdRecord.key_for(source.message_id, source.fingerprint)}
    if isinstance(ready.record, NewComment):
        named.add(("ITEM", str(ready.record.comment.item_number)))
    return named


class _Batch:
    def __init__(self, processor: Processor, seconds_left: Callable[[], float],
                 correlate: Callable[[str], None]) -> None:
        self.processor = processor
        self.seconds_left = seconds_left
        self.correlate = correlate
        self.waiting = _Waiting()
        self.results: dict[int, Outcome | Exception] = {}
        self.failed_groups: set[str] = set()
        self.current = ""  # the key of the mail being judged

    def run(self, records: Sequence[QueuedRecord]) -> list[Outcome | Exception]:
        for index, record in enumerate(records):
            if record.group in self.waiting.groups:
                self._write()
            if record.group in self.failed_groups:
                self.results[index] = GroupSkipped("an earlier mail of this conversation failed in this batch")
                continue
            self._prepare(index, record)
        self._write()
        return [self.results[index] for index in range(len(records))]

    def _prepare(self, index: int, record: QueuedRecord) -> None:
        key, _mailbox = key_of(record.body)
        self.current = key
        self.correlate(key)
        try:
            job = QueuedMessage.from_json(record.body)
            deadline = deadline_for(self.processor.settings, self.seconds_left())
            got = self.processor.prepare(job, record.attempt, deadline=deadline, before_facts=self._before_facts)
        except Exception as exc:  # recorded failed by the processor
            self.results[index] = exc
            self.failed_groups.add(record.group)
            return
        if isinstance(got, Outcome):
            self.results[index] = got
            return
        named = _records_named(got)
        waiting = self.waiting
        if (named & waiting.records or waiting.size + got.size > TOGETHER_MAX_BYTES
                or len(waiting.ready) >= TOGETHER_MAX):
            self._write()
            waiting = self.waiting
        waiting.ready.append((index, record.group, got))
        waiting.groups.add(record.group)
        waiting.senders.add(got.parsed.sender.email.lower())
        waiting.records |= named
        waiting.size += got.size

    def _before_facts(self, parsed: ParsedMessage) -> None:
        if parsed.sender.email.lower() in self.waiting.senders:
            self._write()

    def _write(self) -> None:
        waiting, self.waiting = self.waiting, _Waiting()
        if not waiting.ready:
            return
        results = self.processor.write([ready for _index, _group, ready in waiting.ready], self.correlate)
        self.correlate(self.current)  # back to the mail being judged, if any
        for (index, group, _ready), result in zip(waiting.ready, results, strict=True):
            self.results[index] = result
            if isinstance(result, Exception):
                self.failed_groups.add(group)
