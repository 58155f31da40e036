"""The Kafka sink's error classes: which producer failures are retried and which dead-letter the record.

One function decides, ``is_permanent``; docs/design.md ("Delivery", "Error classes at the sink") has the table.

- **Permanent**: the broker can never take the record (too large, invalid or corrupt, refused by authorization).
  Retrying cannot help; the pipeline isolates the records and dead-letters the ones that fail again.
- **Transient**: everything else, whatever aiokafka's ``retriable`` flag says (it says false for ``UnknownError``,
  a broker restarting, a producer whose sequence numbers the broker lost, a batch that found no leader within the
  request timeout). The sink replaces its producer and the pipeline re-sends what was not acknowledged, in order,
  with backoff, until the broker is back however long that takes. An exception of a kind not listed is transient:
  a stream held back by an unexpected error shows on /readyz and in the logs; a stream silently dead-lettered
  would not.

aiokafka 0.14 maps every broker error code it does not know to ``UnknownError``, which would make an invalid
record (``INVALID_RECORD``, 87) look transient and block the stream; ``register_missing_codes`` (run on import)
adds the produce errors of newer brokers to its table with their real class.
"""

from __future__ import annotations

from aiokafka import errors as kafka_errors
from aiokafka.errors import (
    BrokerResponseError,
    ClusterAuthorizationFailedError,
    CorruptRecordException,
    InvalidTimestampError,
    InvalidTopicError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnsupportedForMessageFormatError,
)

from bridge.model import PublishError

__all__ = ["PERMANENT", "InvalidRecordError", "is_permanent", "register_missing_codes"]


def _code(name: str, errno: int, message: str, description: str, *, stale_metadata: bool = False,
          retriable: bool = False) -> type[BrokerResponseError]:
    """A broker error class for a code aiokafka 0.14 does not know."""
    attrs = {"errno": errno, "message": message, "description": description,
             "retriable": retriable or stale_metadata, "invalid_metadata": stale_metadata}
    cls: type[BrokerResponseError] = type(name, (BrokerResponseError,), attrs)
    return cls


InvalidRecordError = _code("InvalidRecordError", 87, "INVALID_RECORD",
                           "The broker refused a record as invalid (e.g. no key for a compacted topic).")
FencedLeaderEpochError = _code("FencedLeaderEpochError", 74, "FENCED_LEADER_EPOCH",
                               "The request's leader epoch is older than the broker's.", stale_metadata=True)
UnknownLeaderEpochError = _code("UnknownLeaderEpochError", 75, "UNKNOWN_LEADER_EPOCH",
                                "The request's leader epoch is newer than the broker's.", stale_metadata=True)
ThrottlingQuotaExceededError = _code("ThrottlingQuotaExceededError", 89, "THROTTLING_QUOTA_EXCEEDED",
                                     "The throttling quota has been exceeded.", retriable=True)
UnknownTopicIdError = _code("UnknownTopicIdError", 100, "UNKNOWN_TOPIC_ID",
                            "The topic id is not known (a topic recreated).", stale_metadata=True)
InconsistentTopicIdError = _code("InconsistentTopicIdError", 103, "INCONSISTENT_TOPIC_ID",
                                 "The topic id differs from the broker's (a topic recreated).", stale_metadata=True)

_MISSING = (InvalidRecordError, FencedLeaderEpochError, UnknownLeaderEpochError, ThrottlingQuotaExceededError,
            UnknownTopicIdError, InconsistentTopicIdError)

PERMANENT: tuple[type[BaseException], ...] = (
    MessageSizeTooLargeError,  # 10: the record (batch) is over the broker's or topic's max.message.bytes
    RecordListTooLargeError,  # 18: the batch is over the broker's segment size
    RecordTooLargeError,  # the producer's own size check (max_request_size)
    InvalidRecordError,  # 87: the broker validated the record and refused it
    CorruptRecordException,  # 2: the record failed its CRC or is otherwise corrupt
    InvalidTimestampError,  # 32: the timestamp is out of the topic's accepted range
    UnsupportedForMessageFormatError,  # 43: a record feature the topic's message format cannot hold
    InvalidTopicError,  # 17: the topic name is not legal
    TopicAuthorizationFailedError,  # 29: this principal may not write the topic
    ClusterAuthorizationFailedError,  # 31: this principal may not use the idempotent producer
    TransactionalIdAuthorizationFailed,  # 53: this principal may not use the transactional id
)
"""Errors no retry can cure: the records are isolated and the ones that fail again are dead-lettered."""


def register_missing_codes() -> None:
    """Add the produce error codes aiokafka 0.14 lacks to its code table, so they are not ``UnknownError``."""
    for cls in _MISSING:
        kafka_errors.kafka_errors.setdefault(cls.errno, cls)


def is_permanent(exc: BaseException) -> bool:
    """True when retrying the record cannot succeed (``PERMANENT``, or a ``PublishError`` that says so)."""
    if isinstance(exc, PublishError):
        return exc.permanent
    return isinstance(exc, PERMANENT)


register_missing_codes()
