"""The experiment lease on s3:// (search/record/lease.py): S3's conditional writes through boto3.

pyarrow's S3 file system cannot write conditionally, so boto3 (imported here: this module fails to import without
it) talks to the same bucket, with the endpoint and region the URI's query gives pyarrow. The lease object is
created with `If-None-Match: *` (one creator wins), renewed every HEARTBEAT_S with `If-Match` on its own version,
and a lease whose holder's process is gone from this host, or that was not renewed for STALE_S, is taken over with
`If-Match` on the stale version (one reclaimer wins).
"""
from __future__ import annotations

import sys
import threading
import time
from urllib.parse import parse_qs, urlsplit

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from simmim_ray.errors import PATH_CHARS, UserError, excerpt
from simmim_ray.search.record.lease_owner import Lease, Owner, in_use

HEARTBEAT_S = 30.0
# a holder that missed several heartbeats is gone (a killed driver cannot release its lease)
STALE_S = 4 * HEARTBEAT_S
LOST = ("PreconditionFailed", "ConditionalRequestConflict")


def client_and_key(lease_uri: str):
    """(boto3 S3 client, bucket, key) for `lease_uri`, with the options of its query that pyarrow reads."""
    parts = urlsplit(lease_uri)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    kwargs = {}
    if "endpoint_override" in query:
        endpoint = query["endpoint_override"]
        kwargs["endpoint_url"] = endpoint if "://" in endpoint else f"{query.get('scheme', 'https')}://{endpoint}"
    if "region" in query:
        kwargs["region_name"] = query["region"]
    return boto3.client("s3", **kwargs), parts.netloc, parts.path.lstrip("/")


def acquire(exp_uri: str, lease_uri: str) -> Lease:
    client, bucket, key = client_and_key(lease_uri)
    me = Owner.me()
    try:
        etag = _create(client, bucket, key, me)
        if etag is None:
            etag = _take_over_if_stale(client, bucket, key, me, exp_uri, lease_uri)
    except (ClientError, BotoCoreError) as e:
        raise UserError(f"{excerpt(lease_uri, PATH_CHARS)}: cannot take the experiment's lease: "
                        f"{str(e).splitlines()[0][:200]}") from None
    return _Held(client, bucket, key, me, etag, lease_uri).lease()


def _code(e: ClientError) -> str:
    return e.response.get("Error", {}).get("Code", "")


def _create(client, bucket: str, key: str, me: Owner) -> str | None:
    """-> the new lease's ETag, or None when a lease exists."""
    try:
        return client.put_object(Bucket=bucket, Key=key, Body=me.to_bytes(), IfNoneMatch="*")["ETag"]
    except ClientError as e:
        if _code(e) in LOST:
            return None
        raise


def _take_over_if_stale(client, bucket: str, key: str, me: Owner, exp_uri: str, lease_uri: str) -> str:
    try:
        got = client.get_object(Bucket=bucket, Key=key)
    except ClientError as e:
        if _code(e) in ("NoSuchKey", "404"):  # released between our create and this read
            etag = _create(client, bucket, key, me)
            if etag is not None:
                return etag
        raise in_use(exp_uri, None, lease_uri) from None
    holder = Owner.from_bytes(got["Body"].read())
    if holder is not None and time.time() - holder.heartbeat < STALE_S and not holder.gone():
        raise in_use(exp_uri, holder, lease_uri)
    try:
        return client.put_object(Bucket=bucket, Key=key, Body=me.to_bytes(), IfMatch=got["ETag"])["ETag"]
    except ClientError as e:
        if _code(e) in LOST:  # another driver reclaimed it first
            raise in_use(exp_uri, None, lease_uri) from None
        raise


class _Held:
    """A held s3 lease: a daemon thread renews it; release deletes it when it is still ours."""

    def __init__(self, client, bucket: str, key: str, me: Owner, etag: str, uri: str) -> None:
        self.client, self.bucket, self.key, self.me, self.etag, self.uri = client, bucket, key, me, etag, uri
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="simmim-ray-lease", daemon=True)
        self.thread.start()

    def lease(self) -> Lease:
        return Lease(self.uri, self._release)

    def _beat(self) -> None:
        while not self.stop.wait(HEARTBEAT_S):
            self.me.heartbeat = time.time()
            try:
                self.etag = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=self.me.to_bytes(),
                                                   IfMatch=self.etag)["ETag"]
            except ClientError as e:
                if _code(e) in LOST:
                    print(f"simmim-ray: warning: lost the lease {self.uri} (another driver took it over after "
                          f"{STALE_S:g} s without a heartbeat); stop this search", file=sys.stderr, flush=True)
                    return
            except BotoCoreError:  # a network hiccup: the next beat retries, well within STALE_S
                pass

    def _release(self) -> None:
        self.stop.set()
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.key)
            if head["ETag"] == self.etag:
                self.client.delete_object(Bucket=self.bucket, Key=self.key)
        except (ClientError, BotoCoreError):  # gone or unreachable: it goes stale
            pass
