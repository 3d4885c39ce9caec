"""A warehouse on S3: a local working copy kept in step with ``s3://bucket/prefix``.

Every command works on a local folder. For an ``s3://`` warehouse that folder is a working copy
(``config.warehouse_location``), and a writer's session (:func:`session`) brings it up to date before the
step and sends its changes back after it:

```
s3://bucket/prefix/
  current.json                the pointer: which version is published, replaced by a conditional write
  versions/<run>/             sagemaker.duckdb, build.json and parquet/<table>/*.parquet of each kept version
  sagemaker.duckdb parquet/   copies of the current version at fixed keys, made after the pointer moves
  raw/ quarantine/ report/ …  the same files as in a local warehouse, one object each
  locks/<role>.json           leases: one writer per role, taken by a conditional write, with an expiry
```

- A session takes its role's lease: ``locks/<role>.json`` is created only if it does not exist
  (``If-None-Match: *``), renewed by a background thread before it expires, and removed only by its holder
  (``If-Match``). A lease whose holder died expires and the next writer takes it over.
- Pulling downloads the objects that changed since this copy last saw them and the published version.
- Pushing uploads new and changed files first (the raw layer before anything that reads it), then a new
  version's files, and last replaces ``current.json`` on the condition that it is still the one this session
  pulled: two writers cannot both publish, and readers always find one complete version.

Readers (``query``, BI tools) need no lease: the pointer names a version whose objects are all written.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from s3transfer.exceptions import RetriesExceededError as S3TransferRetriesExceededError

from pipelines.config import ORIGIN_FILE, ConfigError, remote_origin
from pipelines.storage.layout import CURRENT, DATABASE, PARQUET, RETIRED, STAGING, VERSIONS
from pipelines.storage.raw import COMPACTED_PREFIX, QUARANTINE, replaced_raw_files
from pipelines.storage.versions import current_version, forget_published
from pipelines.storage.versions import make_current as make_current_version

log = logging.getLogger(__name__)

POINTER = "current.json"
REMOTE_VERSIONS = "versions"
LOCKS = "locks"
SYNCED_FILE = ".synced.json"  # what this copy last saw of each remote object: etag, and the local file's stat
LEASE_SECONDS = 600  # a lease outlives a dead holder by at most this long
POLL_SECONDS = 5.0
_MISSING = ("NoSuchKey", "404")  # error codes of an object that is not there
# Local only: locks, builds in progress, versions (sent as versions/), a retired version's database, the links,
# and the copy's own records.
LOCAL_ONLY = {".locks", STAGING, VERSIONS, RETIRED, CURRENT, DATABASE, PARQUET, ORIGIN_FILE, SYNCED_FILE}


class RemoteWarehouseError(ConfigError):
    """S3 refused or could not be reached; one sentence that says what to fix."""


class PublicationConflict(RuntimeError):
    """Another writer published while this session held no valid lease or built on an older version."""


class WarehouseLeaseBusy(RuntimeError):
    """Another writer holds the lease and the caller chose not to wait (its holder text is the message)."""


@dataclass(frozen=True)
class Remote:
    bucket: str
    prefix: str  # without a trailing slash; may be empty

    @classmethod
    def of(cls, uri: str) -> Remote:
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        return cls(bucket, prefix.strip("/"))

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def relative(self, key: str) -> str:
        return key[len(self.prefix) + 1 :] if self.prefix else key


_TRANSFERS = 10  # objects moved at once


def _client() -> Any:
    """An S3 client from the standard AWS settings (``AWS_ENDPOINT_URL`` reaches a local endpoint), with a
    connection for each transfer, each transfer manager's submitting threads and the lease renewer."""
    return boto3.client("s3", config=Config(max_pool_connections=2 * _TRANSFERS))


def _side_by_side(client: Any, transfers: list[tuple[str, tuple[Any, ...]]]) -> None:
    """Run S3 transfers (``download``, ``upload``, ``copy`` with their arguments) side by side through one
    of boto3's transfer managers: a version is a couple of hundred small objects, and one at a time each
    waits out its own round trip. Raises the first failure; the transfers not yet done are cancelled."""
    if not transfers:
        return
    with create_transfer_manager(client, TransferConfig(max_concurrency=_TRANSFERS)) as manager:
        futures = [getattr(manager, method)(*arguments) for method, arguments in transfers]
        try:
            for future in futures:
                future.result()
        except S3TransferRetriesExceededError as error:  # a body that broke off mid-read, every retry
            raise error.last_exception from None  # botocore's own error, which callers explain


def _new_file(path: Path) -> str:
    """``path`` as a download target, its folder made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return str(path)


def _explain(error: Exception, remote: Remote, doing: str) -> RemoteWarehouseError:
    if isinstance(error, NoCredentialsError):
        return RemoteWarehouseError(
            f"No AWS credentials to {doing} {remote.uri}; configure them (AWS_PROFILE, environment variables or "
            "an instance role)."
        )
    if isinstance(error, ClientError):
        code = _code(error)
        if code == "NoSuchBucket":
            return RemoteWarehouseError(
                f"The warehouse bucket {remote.bucket} does not exist; create it or point warehouse elsewhere."
            )
        if code in _MISSING:
            return RemoteWarehouseError(
                f"An object under {remote.uri} disappeared while it was being read (another writer set it aside "
                "or removed an old version); run again."
            )
        if code in ("AccessDenied", "403", "AllAccessDisabled"):
            return RemoteWarehouseError(
                f"Access denied when trying to {doing} {remote.uri}; the warehouse needs s3:ListBucket on the "
                "bucket and s3:GetObject, s3:PutObject and s3:DeleteObject under the prefix."
            )
        return RemoteWarehouseError(f"S3 refused to {doing} {remote.uri}: {code or error}.")
    return RemoteWarehouseError(f"Could not {doing} {remote.uri}: {str(error).splitlines()[0]}.")


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _upload_order(relative: str) -> tuple[int, str]:
    """Data before the state that vouches for it: a Search watermark goes up only after the raw files."""
    return (1 if relative.startswith("raw/state/") else 0, relative)


def _delete_if_unchanged(client: Any, bucket: str, key: str, etag: str) -> None:
    """Delete ``key`` only if it is still the object with ``etag``; changed or gone since: theirs stands."""
    try:
        client.delete_object(Bucket=bucket, Key=key, IfMatch=etag)
    except ClientError as error:
        if not _is_precondition_failure(error) and _code(error) not in _MISSING:
            raise


def _is_precondition_failure(error: ClientError) -> bool:
    code = error.response.get("Error", {}).get("Code", "")
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412)


def _listing(client: Any, remote: Remote, under: str = "") -> dict[str, tuple[str, int]]:
    """Relative key -> (etag, size) of every object under ``under`` (relative to the prefix)."""
    found: dict[str, tuple[str, int]] = {}
    prefix = remote.key(under) if under else (f"{remote.prefix}/" if remote.prefix else "")
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=remote.bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            found[remote.relative(item["Key"])] = (item["ETag"], item["Size"])
    return found


def _synced_files(relative: str) -> bool:
    """Whether a relative path is kept in step as a plain object (not a local-only or version path)."""
    first = relative.split("/", 1)[0]
    name = relative.rsplit("/", 1)[-1]
    return (
        first not in LOCAL_ONLY
        and first not in (POINTER, REMOTE_VERSIONS, LOCKS)
        and ".tmp" not in name  # a file being written; it arrives under its final name
    )


class WorkingCopy:
    """The local folder of an s3:// warehouse and what it last saw of the bucket."""

    def __init__(self, warehouse: Path, remote: Remote, client: Any | None = None) -> None:
        self.warehouse = warehouse
        self.remote = remote
        self.client = client or _client()
        self.pointer_etag: str | None = None  # the pointer this copy pulled; publication requires it unchanged
        self.pointer_version: str | None = None
        self.base_version: str | None = None  # the copy's current version after the pull

    # -- what this copy last saw -------------------------------------------------------------------------------
    def _read_synced(self) -> dict[str, dict[str, Any]]:
        path = self.warehouse / SYNCED_FILE
        return json.loads(path.read_text()) if path.is_file() else {}

    def _write_synced(self, synced: dict[str, dict[str, Any]]) -> None:
        path = self.warehouse / SYNCED_FILE
        temporary = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        temporary.write_text(json.dumps(synced, sort_keys=True))
        os.replace(temporary, path)

    @staticmethod
    def _stat(path: Path) -> list[int]:
        info = path.stat()
        return [info.st_size, info.st_mtime_ns]

    def status(self) -> str:
        """One line on the S3 warehouse for ``check``: reachable, and what is published. Raises
        RemoteWarehouseError naming what to fix when it cannot be listed or read."""
        try:
            self.client.list_objects_v2(Bucket=self.remote.bucket, Prefix=self.remote.key(""), MaxKeys=1)
            _, version = self._read_pointer()
        except (ClientError, BotoCoreError) as error:
            raise _explain(error, self.remote, "read") from None
        published = f"version {version} published" if version else "nothing published yet"
        return f"warehouse {self.remote.uri}: readable, {published}; working copy {self.warehouse}"

    # -- pull ------------------------------------------------------------------------------------------------------
    def pull(self, make_current: bool) -> None:
        """Bring the copy's files up to date. A session that publishes (``make_current``, under the build lock)
        also fetches the published version and makes it the copy's current one; everyone else leaves
        ``current`` alone, so that it never moves under a build in progress."""
        try:
            self._pull_files()
            version = self._pull_version() if make_current else None
        except (ClientError, BotoCoreError) as error:
            raise _explain(error, self.remote, "read") from None
        if version is not None and current_version(self.warehouse) != version:
            make_current_version(self.warehouse, version)
        elif make_current and version is None and self.pointer_etag is None:
            forget_published(self.warehouse)  # from another history (a wiped prefix, a demo): S3 is the truth
        self.base_version = current_version(self.warehouse)  # a version other than this one is new: publish it

    def _pull_files(self) -> None:
        """Download what changed on S3 since this copy last saw it. A file this copy changed or set aside
        (quarantined) and has not pushed yet is left as it is; a file it lost is downloaded again."""
        synced = self._read_synced()
        listed = {key: found for key, found in _listing(self.client, self.remote).items() if _synced_files(key)}
        replaced = replaced_raw_files(self.warehouse)
        wanted = {}
        for relative, (etag, _size) in listed.items():
            local = self.warehouse / relative
            seen = synced.get(relative)
            if not (seen and seen["etag"] == etag and (local.is_file() or self._set_aside(relative, replaced))):
                wanted[relative] = (etag, local.with_name(f"{local.name}.tmp-{os.getpid()}-{threading.get_ident()}"))
        try:
            _side_by_side(
                self.client,
                [("download", (self.remote.bucket, self.remote.key(r), _new_file(t))) for r, (_, t) in wanted.items()],
            )
            for relative, (etag, temporary) in wanted.items():
                local = self.warehouse / relative
                os.replace(temporary, local)
                synced[relative] = {"etag": etag, "stat": self._stat(local)}
        finally:
            for _etag, temporary in wanted.values():
                temporary.unlink(missing_ok=True)
        for relative in [r for r in synced if r not in listed]:  # set aside by another writer since
            local = self.warehouse / relative
            if local.is_file() and self._stat(local) == synced[relative]["stat"]:
                local.unlink()
            del synced[relative]
        self._write_synced(synced)

    def on_s3(self, synced: dict[str, Any] | None = None) -> set[Path]:
        """The files of this copy that are on S3 as they are here (sent or fetched, unchanged since), by the
        sync record on disk or ``synced``, one being updated."""
        synced = self._read_synced() if synced is None else synced
        paths = ((self.warehouse / relative, seen) for relative, seen in synced.items())
        return {path for path, seen in paths if path.is_file() and self._stat(path) == seen["stat"]}

    def _set_aside(self, relative: str, replaced: set[str]) -> bool:
        """Whether this copy moved the raw file ``relative`` to quarantine or merged it into a compacted
        file it holds (``replaced``: :func:`replaced_raw_files`): the only removals it sends."""
        return relative in replaced or (self.warehouse / QUARANTINE / relative).is_file()

    def _read_pointer(self) -> tuple[str | None, str | None]:
        try:
            response = self.client.get_object(Bucket=self.remote.bucket, Key=self.remote.key(POINTER))
        except ClientError as error:
            if _code(error) in _MISSING:
                return None, None
            raise
        pointer = json.loads(response["Body"].read())
        return response["ETag"], pointer["version"]

    def _pull_version(self) -> str | None:
        """Read the pointer and make sure its version is in ``.versions/``; returns the version."""
        self.pointer_etag, self.pointer_version = self._read_pointer()
        version = self.pointer_version
        if version is None:
            return None
        folder = self.warehouse / VERSIONS / version
        if not folder.is_dir():
            partial = folder.with_name(f"{version}.download-{os.getpid()}-{threading.get_ident()}")
            shutil.rmtree(partial, ignore_errors=True)
            objects = _listing(self.client, self.remote, f"{REMOTE_VERSIONS}/{version}/")
            if not objects:
                raise RemoteWarehouseError(
                    f"{self.remote.uri}/{POINTER} names version {version}, which has no objects under "
                    f"{REMOTE_VERSIONS}/{version}/; restore them or publish again with a full run."
                )
            prefix = f"{REMOTE_VERSIONS}/{version}/"
            targets = {relative: partial / relative.removeprefix(prefix) for relative in objects}
            _side_by_side(
                self.client,
                [("download", (self.remote.bucket, self.remote.key(r), _new_file(t))) for r, t in targets.items()],
            )
            os.replace(partial, folder)
        return version

    def published_database(self) -> Path | None:
        """For a reader: the published version's DuckDB file, downloaded if this copy lacks it, read where
        it is (``current`` is not moved: a build may be using this copy). None before a publication."""
        try:
            version = self._pull_version()
        except (ClientError, BotoCoreError) as error:
            raise _explain(error, self.remote, "read") from None
        return self.warehouse / VERSIONS / version / DATABASE if version else None

    # -- push ------------------------------------------------------------------------------------------------------
    def push(self, lease: Lease | None = None, publish: bool = True) -> None:
        """Send this copy's new and changed files, then (``publish``) the version this session published, if
        any. The pointer is replaced last, only if it is still the one this copy pulled and the lease (if
        any) is still this session's."""
        try:
            self._push_files()
            if publish:
                self._push_version(lease)
        except (ClientError, BotoCoreError) as error:
            raise _explain(error, self.remote, "write") from None

    def _push_files(self) -> None:
        """Upload new and changed files: the raw data first, the state that vouches for it (a Search
        watermark) after it. An object is removed only when this copy quarantined it or a compacted file
        replaced it (the compacted file goes up first): a file merely missing here (a cleaned cache) is
        never removed from S3."""
        synced = self._read_synced()
        tops = [p for p in self.warehouse.iterdir() if p.name not in LOCAL_ONLY and not p.is_symlink()]
        files = [p for top in tops for p in ([top] if top.is_file() else top.rglob("*")) if p.is_file()]
        relatives = [p.relative_to(self.warehouse).as_posix() for p in files if not p.is_symlink()]
        for relative in sorted((r for r in relatives if _synced_files(r)), key=_upload_order):
            path = self.warehouse / relative
            seen = synced.get(relative)
            if seen and self._stat(path) == seen["stat"]:
                continue
            with open(path, "rb") as body:
                response = self.client.put_object(Bucket=self.remote.bucket, Key=self.remote.key(relative), Body=body)
            synced[relative] = {"etag": response["ETag"], "stat": self._stat(path)}
        # Only what a compacted file sent up (by this push or an earlier one) replaces is removed: another
        # process's compaction may finish while this push runs, and its sources must stay until it is sent.
        sent = [path for path in self.on_s3(synced) if path.name.startswith(COMPACTED_PREFIX)]
        replaced = replaced_raw_files(self.warehouse, sent)
        for relative in [r for r in synced if not (self.warehouse / r).is_file() and self._set_aside(r, replaced)]:
            _delete_if_unchanged(self.client, self.remote.bucket, self.remote.key(relative), synced[relative]["etag"])
            del synced[relative]
        self._write_synced(synced)

    def _push_version(self, lease: Lease | None) -> None:
        version = current_version(self.warehouse)
        if version is None or version == self.base_version:
            return  # this session published nothing
        folder = self.warehouse / VERSIONS / version
        files = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
        keys = {name: self.remote.key(f"{REMOTE_VERSIONS}/{version}/{name}") for name in files}
        _side_by_side(self.client, [("upload", (str(folder / n), self.remote.bucket, k)) for n, k in keys.items()])
        tables = {  # a table is a folder of Parquet files
            name.split("/")[1]: f"{self.remote.uri}/{REMOTE_VERSIONS}/{version}/{PARQUET}/{name.split('/')[1]}/"
            for name in files
            if name.startswith(f"{PARQUET}/")
        }
        if lease is not None and not lease.still_held():
            raise PublicationConflict(
                f"Not published to {self.remote.uri}: this run's lease expired while it ran and another writer may "
                f"have taken over; version {version} was uploaded but is not current. Run again."
            )
        pointer = {
            "version": version,
            "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "database": f"{self.remote.uri}/{REMOTE_VERSIONS}/{version}/{DATABASE}",
            "tables": tables,
        }
        etag = self._replace_pointer(pointer, version)
        previous = self.pointer_version
        self.pointer_etag, self.pointer_version = etag, version
        self._refresh_stable_copies(version, files)
        self._remove_old_versions(keep={version, previous})

    def _replace_pointer(self, pointer: dict[str, Any], version: str) -> str:
        """The one write that publishes: only if the pointer is still the one this copy pulled (or, before
        the first publication, still absent). Returns the new pointer's etag."""
        condition = {"IfMatch": self.pointer_etag} if self.pointer_etag else {"IfNoneMatch": "*"}
        try:
            response = self.client.put_object(
                Bucket=self.remote.bucket,
                Key=self.remote.key(POINTER),
                Body=json.dumps(pointer, indent=2).encode(),
                ContentType="application/json",
                **condition,
            )
        except ClientError as error:
            if _is_precondition_failure(error):
                raise PublicationConflict(
                    f"Not published to {self.remote.uri}: another writer published since this run read the "
                    f"warehouse; version {version} was uploaded but is not current. Run again."
                ) from None
            raise
        return str(response["ETag"])

    def _refresh_stable_copies(self, version: str, files: list[str]) -> None:
        """``parquet/<table>/`` and ``sagemaker.duckdb`` at fixed keys, for tools that need a fixed location
        (Athena and Trino tables, a DuckDB ATTACH): server-side copies of the version just published, then
        the fixed-key files it no longer has (a week no row of the table is in any more) removed. Each object is
        replaced whole; across tables they can differ by one version for the seconds this takes."""
        stable = [name for name in files if name == DATABASE or name.startswith(f"{PARQUET}/")]
        copies = [
            (
                "copy",
                (
                    {"Bucket": self.remote.bucket, "Key": self.remote.key(f"{REMOTE_VERSIONS}/{version}/{relative}")},
                    self.remote.bucket,
                    self.remote.key(relative),
                ),
            )
            for relative in stable
        ]
        _side_by_side(self.client, copies)
        extra = set(_listing(self.client, self.remote, f"{PARQUET}/")) - set(stable)
        self._delete(sorted(extra), f"{self.remote.uri}/{PARQUET}/")

    def _remove_old_versions(self, keep: set[str | None]) -> None:
        """Drop remote versions other than the new one and the one before it (readers may still be on it)."""
        stale = [
            key for key in _listing(self.client, self.remote, f"{REMOTE_VERSIONS}/") if key.split("/")[1] not in keep
        ]
        self._delete(stale, f"{self.remote.uri}/{REMOTE_VERSIONS}/")

    def _delete(self, keys: list[str], under: str) -> None:
        """Remove objects that are no longer published; a refusal is a warning (published all the same)."""
        for start in range(0, len(keys), 1000):
            batch = [{"Key": self.remote.key(key)} for key in keys[start : start + 1000]]
            response = self.client.delete_objects(Bucket=self.remote.bucket, Delete={"Objects": batch, "Quiet": True})
            for error in response.get("Errors", [])[:1]:
                log.warning(
                    f"Published, but old objects under {under} could not be removed "
                    f"({error.get('Code')}: {len(response['Errors'])} objects); the warehouse needs s3:DeleteObject."
                )


class Lease:
    """``locks/<role>.json`` held by this process: created only if absent, renewed before it expires."""

    def __init__(self, copy: WorkingCopy, role: str, seconds: int = LEASE_SECONDS) -> None:
        self.client, self.remote = copy.client, copy.remote
        self.key = copy.remote.key(f"{LOCKS}/{role}.json")
        self.role = role
        self.seconds = seconds
        self.etag: str | None = None
        self.token = uuid.uuid4().hex
        self.lost = False
        self._stop = threading.Event()
        self._renewing = threading.Lock()  # the renewer thread and the check before publishing
        self._renewer: threading.Thread | None = None

    def _body(self) -> bytes:
        now = datetime.now(UTC)
        return json.dumps(
            {
                "holder": f"pid {os.getpid()} on {socket.gethostname()}",
                "token": self.token,  # two holders never write the same body, so never share an etag
                "since": now.isoformat(timespec="seconds"),
                "expires": (now + timedelta(seconds=self.seconds)).isoformat(timespec="seconds"),
            }
        ).encode()

    def acquire(self, wait: bool, on_wait: Callable[[str], None] | None) -> None:
        told = False
        while True:
            try:
                response = self.client.put_object(
                    Bucket=self.remote.bucket, Key=self.key, Body=self._body(), IfNoneMatch="*"
                )
                self.etag = response["ETag"]
                break
            except ClientError as error:
                if not _is_precondition_failure(error):
                    raise
            holder, expires, etag = self._current()
            if etag is None:
                continue  # released between the two calls
            if expires is not None and expires < datetime.now(UTC):
                self._take_over(etag)
                continue
            if not wait:
                raise WarehouseLeaseBusy(
                    f"{holder}; if that process is gone, its lease expires at {expires:%Y-%m-%d %H:%M:%S} UTC"
                    if expires
                    else holder
                )
            if on_wait and not told:
                on_wait(f"{holder}, through s3://{self.remote.bucket}/{self.key}")
                told = True
            time.sleep(POLL_SECONDS)
        self._renewer = threading.Thread(target=self._renew, name=f"lease-{self.role}", daemon=True)
        self._renewer.start()

    def _current(self) -> tuple[str, datetime | None, str | None]:
        try:
            response = self.client.get_object(Bucket=self.remote.bucket, Key=self.key)
        except ClientError as error:
            if _code(error) in _MISSING:
                return "nobody", None, None
            raise
        try:
            lease = json.loads(response["Body"].read())
            return str(lease["holder"]), datetime.fromisoformat(lease["expires"]), response["ETag"]
        except (ValueError, KeyError, TypeError):  # unreadable: treat as expired, so it cannot block forever
            return "an unreadable lease", datetime.min.replace(tzinfo=UTC), response["ETag"]

    def _take_over(self, etag: str) -> None:
        """Remove an expired lease, only if it is still the one that was read (another writer may be faster)."""
        _delete_if_unchanged(self.client, self.remote.bucket, self.key, etag)

    def _renew(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            if not self.still_held():
                return

    def still_held(self) -> bool:
        """Renew the lease now, on the condition that it is still this holder's; False (for good) if another
        writer has taken it over after it expired, or S3 cannot confirm it."""
        with self._renewing:
            if self.lost:
                return False
            try:
                response = self.client.put_object(
                    Bucket=self.remote.bucket, Key=self.key, Body=self._body(), IfMatch=self.etag
                )
                self.etag = response["ETag"]
            except (ClientError, BotoCoreError):
                self.lost = True  # never publish on it
            return not self.lost

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        if not self.lost and self.etag is not None:
            _delete_if_unchanged(self.client, self.remote.bucket, self.key, self.etag)


def working_copy(warehouse: Path) -> WorkingCopy | None:
    """The working copy of an s3:// warehouse at ``warehouse``, or None for a local warehouse."""
    origin = remote_origin(warehouse)
    return WorkingCopy(warehouse, Remote.of(origin)) if origin else None


@contextmanager
def _held(copy: WorkingCopy, role: str, wait: bool, on_wait: Callable[[str], None] | None) -> Iterator[Lease]:
    """``role``'s lease for the block. A lease that cannot be released (S3 refused) is left to expire; the
    refusal is reported unless another error is already on its way out."""
    lease = Lease(copy, role)
    try:
        lease.acquire(wait, on_wait)
    except (ClientError, BotoCoreError) as error:
        raise _explain(error, copy.remote, "lock") from None
    failed = False
    try:
        yield lease
    except BaseException:
        failed = True
        raise
    finally:
        try:
            lease.release()
        except (ClientError, BotoCoreError) as error:
            if not failed:
                raise _explain(error, copy.remote, "release the lease of") from None


@contextmanager
def session(
    warehouse: Path,
    role: str,
    publishes: bool,
    wait: bool = True,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """For an s3:// warehouse: hold ``role``'s lease, pull before, push after (also after a failure: what
    was fetched from AWS is kept). Only a session that ``publishes`` (the build's, under the local build
    lock) moves the copy's current version and the pointer. For a local warehouse: nothing."""
    copy = working_copy(warehouse)
    if copy is None:
        yield
        return
    with _held(copy, role, wait, on_wait) as lease:
        copy.pull(make_current=publishes)
        try:
            yield
        finally:
            copy.push(lease, publish=publishes)


@contextmanager
def lease_only(warehouse: Path, role: str, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """``role``'s lease without a pull or push: a whole run's steps, whose run keeps the copy in step."""
    copy = working_copy(warehouse)
    if copy is None:
        yield
        return
    with _held(copy, role, wait=True, on_wait=on_wait):
        yield


def published_database(warehouse: Path) -> Path | None:
    """The DuckDB file a reader opens: ``<warehouse>/sagemaker.duckdb``, or for an s3:// warehouse the
    published version's file in the working copy (None before the first publication)."""
    copy = working_copy(warehouse)
    return warehouse / DATABASE if copy is None else copy.published_database()
