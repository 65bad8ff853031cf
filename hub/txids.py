"""transactionId allocation: unique across gateways, durable, int32, and idempotent on retries.

A StartTransaction's identity (charger, connector, id tag, timestamp, meterStart) is hashed
into a key of a JetStream key-value bucket. ``create`` on that key succeeds for exactly one
caller in the whole cluster, and the revision it returns, a sequence of the bucket's stream,
is the transaction id. A retried StartTransaction finds the key and gets the same revision
back, whichever gateway it reaches and however long after, within the bucket's TTL.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Final

import msgspec
import nats.errors
import structlog
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BadRequestError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from hub.bus import Connection

log = structlog.get_logger("hub.txids")

INT32_MAX: Final = 2**31 - 1
BUCKET: Final = "OCPP_TXIDS"


class StartIdentity(msgspec.Struct, frozen=True, array_like=True):
    charge_point_id: str
    connector_id: int
    id_tag: str
    timestamp: str
    meter_start: int


_encoder: Final = msgspec.json.Encoder()


def identity_key(identity: StartIdentity) -> str:
    return hashlib.blake2b(_encoder.encode(identity), digest_size=16).hexdigest()


class TransactionIdExhausted(RuntimeError):
    pass


class TransactionIds:
    def __init__(self, connection: Connection, kv: KeyValue, *, timeout: float = 2.0) -> None:
        self._connection = connection
        self._kv = kv
        self._timeout = timeout

    @classmethod
    async def open(
        cls,
        connection: Connection,
        *,
        ttl_s: float,
        replicas: int = 1,
        file_storage: bool = True,
        request_timeout: float = 2.0,
    ) -> TransactionIds:
        config = KeyValueConfig(
            bucket=BUCKET,
            history=1,
            ttl=ttl_s,
            storage=StorageType.FILE if file_storage else StorageType.MEMORY,
            replicas=replicas,
        )
        try:
            kv = await connection.js.create_key_value(config)
        except BadRequestError:
            # The bucket exists with other limits; keeping its ids matters more than the TTL.
            kv = await connection.js.key_value(BUCKET)
        return cls(connection, kv, timeout=request_timeout)

    async def allocate(self, identity: StartIdentity) -> int:
        """The transaction id for this StartTransaction; retries through NATS outages."""
        key = identity_key(identity)
        backoff = 0.05
        while True:
            try:
                async with asyncio.timeout(self._timeout):
                    revision = await self._create_or_get(key, identity)
                break
            except (TimeoutError, nats.errors.Error) as error:
                log.warning("txid.retry", key=key, error=str(error) or type(error).__name__)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
            await self._connection.connected.wait()
        if revision > INT32_MAX:
            raise TransactionIdExhausted(f"bucket {BUCKET} passed int32 at revision {revision}")
        return revision

    async def _create_or_get(self, key: str, identity: StartIdentity) -> int:
        try:
            return int(await self._kv.create(key, _encoder.encode(identity)))
        except KeyWrongLastSequenceError:
            pass
        try:
            entry = await self._kv.get(key)
        except NotFoundError as error:
            raise nats.errors.Error(f"txid key {key} vanished between create and get") from error
        assert entry.revision is not None
        return int(entry.revision)
