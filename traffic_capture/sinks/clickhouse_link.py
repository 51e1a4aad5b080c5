"""The sender's side of one ClickHouse: it checks the raw table, inserts batches with their
deduplication tokens and the insert settings, and sorts every failure into what the sender
does next (retry, give the batch up, or stop), in one line that never holds the password.

The store's facts (the URL, the credentials, the client, ClickHouse's error codes, what a
failure means) are the fleet's (fleet/connect.py), and so are the table's name, its columns
and its TTL (fleet/schema.py): `traffic-capture clickhouse init` makes that schema.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from typing import Any

from traffic_capture.errors import TrafficCaptureError
from traffic_capture.fleet.connect import (
    INIT_COMMAND,
    REFUSED_USER,
    Credentials,
    Failure,
    Target,
    connect_client,
    diagnose,
)
from traffic_capture.fleet.schema import INSERT_COLUMNS, RAW_TABLE, FleetError, keep_in_engine

INIT_HINT = f"'{INIT_COMMAND}'"

# Sent with every batch. async_insert: the server gathers the inserts of the whole fleet into
# few parts (thousands of daemons each inserting every few seconds would otherwise make "too
# many parts"); wait_for_async_insert: it answers once the rows are stored, so an answer
# means stored. A retried batch carries the same insert_deduplication_token and is dropped by
# the server if its first attempt got in: deduplicate_insert on servers that have it,
# insert_deduplicate / async_insert_deduplicate on older ones (for async inserts), and the
# rollups' materialized views deduplicate theirs too. The tables keep a deduplication window
# for it (fleet/schema.py's DEDUPLICATION_WINDOW; Replicated* keep one of their own). A
# setting the server does not know is left out.
INSERT_SETTINGS: dict[str, str] = {
    "async_insert": "1",
    "wait_for_async_insert": "1",
    "deduplicate_insert": "enable",
    "insert_deduplicate": "1",
    "async_insert_deduplicate": "1",
    "deduplicate_blocks_in_dependent_materialized_views": "1",
}


class StoreError(TrafficCaptureError):
    """ClickHouse cannot take the rows; the message says why in one line."""


class StoreUnavailable(StoreError):
    """No answer, or an answer that may change: down, slow, overloaded. Retried."""


class StoreRefused(StoreError):
    """An answer that will not change by itself: not ClickHouse, the user refused, no schema."""


class BatchRejected(StoreError):
    """ClickHouse cannot read this batch: sending it again would fail again."""


def batch_token(data: bytes, identity: str) -> str:
    """A batch's insert_deduplication_token: its identity (clickhouse_spool.new_identity) and the
    hash of its bytes, so that the same batch, sent again by this run or by the next one
    (from the spool), gets the same token, and another batch of the same bytes another."""
    digest = hashlib.sha256(data).hexdigest()
    return f"traffic-capture-{identity}-{digest}" if identity else f"traffic-capture-{digest}"


@dataclass(frozen=True)
class TableInfo:
    keep_s: int | None  # the raw table's TTL on window_start (None: none found)


class Store:
    """A connection to the raw table: verify it, insert batches. Errors come out as
    StoreUnavailable, StoreRefused or BatchRejected."""

    def __init__(self, target: Target, credentials: Credentials, timeout: float) -> None:
        self.target, self.credentials, self.timeout = target, credentials, timeout
        self._client: Any = None

    def connect(self) -> None:
        try:
            # Uncompressed: the batch goes as the spool holds it, and a server's answer to it
            # is a few bytes.
            self._client = connect_client(self.target, self.credentials,
                                          timeout_s=self.timeout, compress=False)
        except FleetError as error:  # clickhouse-connect or chDB missing, no chDB folder
            raise StoreRefused(str(error)) from None
        except Exception as error:  # noqa: BLE001 - every failure is said in one line
            raise self.explain(error) from None

    def verify(self) -> TableInfo:
        """The raw table is there with its columns; its TTL."""
        if self._client is None:
            self.connect()
        database, url = self.target.database, self.target.url
        found = self._rows(f"SELECT engine_full FROM system.tables WHERE database = "
                           f"'{database}' AND name = '{RAW_TABLE}'")
        if not found:
            raise StoreRefused(f"ClickHouse at {url} has no table {database}.{RAW_TABLE}: "
                               f"create the schema with {INIT_HINT}")
        held = {row[0] for row in self._rows(
            f"SELECT name FROM system.columns WHERE database = '{database}' "
            f"AND table = '{RAW_TABLE}'")}
        missing = [column for column in INSERT_COLUMNS if column not in held]
        if missing:
            raise StoreRefused(f"ClickHouse table {database}.{RAW_TABLE} at {url} lacks "
                               f"{', '.join(missing)}: upgrade the schema with {INIT_HINT}")
        return TableInfo(keep_in_engine(str(found[0][0])))

    def _rows(self, sql: str) -> list[Any]:
        try:
            return list(self._client.query(sql).result_rows)
        except Exception as error:  # noqa: BLE001
            raise self.explain(error) from None

    def insert(self, data: bytes, identity: str) -> None:
        """One batch (CSVWithNames), with its deduplication token."""
        if self._client is None:
            self.connect()
        known = self._client.server_settings
        settings = {name: value for name, value in INSERT_SETTINGS.items() if name in known}
        settings["insert_deduplication_token"] = batch_token(data, identity)
        try:
            self._client.raw_insert(RAW_TABLE, INSERT_COLUMNS, data, settings=settings,
                                    fmt="CSVWithNames")
        except Exception as error:  # noqa: BLE001
            raise self.explain(error) from None

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # closing a connection that failed
                client.close()

    def explain(self, error: BaseException) -> StoreError:
        """A client's exception as one of ours, by what it means (connect.diagnose): what
        may pass is retried, what will not stops the sender, a batch ClickHouse cannot read
        is given up. One line, without the password."""
        if isinstance(error, StoreError):
            return error
        target, url, database = self.target, self.target.url, self.target.database
        diagnosis = diagnose(error)
        failure, said = diagnosis.failure, self.credentials.scrub(diagnosis.said)
        user = self.credentials.user
        if failure is Failure.NO_SUCH_HOST:
            return StoreRefused(f"--clickhouse {url}: the host {target.host} is not known "
                                "(DNS)")
        if failure is Failure.TLS:
            return StoreRefused(f"{url}: the TLS handshake failed ({said}): is it an http "
                                "port given as https, or a certificate this machine does "
                                "not trust?")
        if failure is Failure.TIMEOUT:
            return StoreUnavailable(f"ClickHouse at {url} did not answer within "
                                    f"{self.timeout:g} s")
        if failure is Failure.CONNECTION_REFUSED:
            return StoreUnavailable(f"ClickHouse at {url} refuses connections (down, or "
                                    f"nothing listens on port {target.port})")
        if failure is Failure.UNREACHABLE:
            return StoreUnavailable(f"cannot reach ClickHouse at {url} ({said})")
        if failure is Failure.REFUSED_USER:
            reason = REFUSED_USER.get(diagnosis.code or 0, "refused")
            return StoreRefused(f"ClickHouse at {url} refused the user '{user}' ({reason}): "
                                f"check the user and the password "
                                f"({self.credentials.password_origin()})")
        if failure is Failure.ACCESS_DENIED:
            return StoreRefused(f"ClickHouse at {url} denies the user '{user}' a right it "
                                f"needs (INSERT and SELECT on {database}.{RAW_TABLE}, see the "
                                f"README): {said}")
        if failure is Failure.NO_DATABASE:
            return StoreRefused(f"ClickHouse at {url} has no database {database}: create the "
                                f"schema with {INIT_HINT}")
        if failure is Failure.NO_TABLE:
            return StoreRefused(f"ClickHouse at {url} has no table {database}.{RAW_TABLE}: "
                                f"create the schema with {INIT_HINT}")
        if failure is Failure.UNPARSABLE:
            return BatchRejected(f"ClickHouse at {url} cannot read the batch: {said}")
        if failure is Failure.CLICKHOUSE_ERROR:  # an error it may not give next time
            return StoreUnavailable(f"ClickHouse at {url} failed: {said}")
        if failure is Failure.SERVER_ERROR:
            return StoreUnavailable(f"{url} answered HTTP {diagnosis.status}: {said}")
        status = f" (HTTP {diagnosis.status})" if diagnosis.status else ""
        return StoreRefused(f"{url} answers, but not as ClickHouse{status}: check the host, "
                            "the port (ClickHouse's HTTP port is 8123, 8443 with TLS) and "
                            "http or https")
