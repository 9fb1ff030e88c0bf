"""Where the trainer reads and writes: local paths and file:// URIs as they are, s3:// through
boto3 (the endpoint from the usual AWS settings, so an S3-compatible store works too)."""

from __future__ import annotations

import os
import shutil
from urllib.parse import urlparse

from .errors import TrainerError


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def local_path(uri: str) -> str | None:
    """The local path of a `file://` URI or a plain path; None for a remote URI."""
    if uri.startswith("file://"):
        return urlparse(uri).path
    if "://" in uri:
        return None
    return uri


def _split(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if not parsed.netloc:
        raise TrainerError("InvalidConfig", f"{uri} names no bucket")
    return parsed.netloc, parsed.path.lstrip("/")


def _client():
    import boto3

    return boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3") or None)


def download(uri: str, target: str, what: str) -> str:
    """Copies everything under the s3:// prefix `uri` into `target`; returns `target`."""
    import botocore.exceptions

    bucket, prefix = _split(uri)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    try:
        client = _client()
        found = 0
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                relative = item["Key"][len(prefix):]
                if not relative or relative.endswith("/"):
                    continue
                path = os.path.join(target, relative)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                client.download_file(bucket, item["Key"], path)
                found += 1
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        raise TrainerError("StorageUnreachable", f"cannot read the {what} at {uri}: {error}") from None
    if not found:
        raise TrainerError("DatasetMissing" if what == "dataset" else "ModelUnreachable", f"the {what} at {uri} is empty or does not exist")
    return target


def publish(folder: str, uri: str) -> None:
    """Copies the finished run's folder to `uri`; metrics.json last, so that its presence means
    the rest is there."""
    files = sorted(
        os.path.relpath(os.path.join(root, name), folder) for root, _, names in os.walk(folder) for name in names
    )
    files.sort(key=lambda name: name == "metrics.json")
    path = local_path(uri)
    if path is not None:
        if os.path.abspath(path) == os.path.abspath(folder):
            return
        for name in files:
            os.makedirs(os.path.dirname(os.path.join(path, name)), exist_ok=True)
            shutil.copyfile(os.path.join(folder, name), os.path.join(path, name) + ".partial")
            os.replace(os.path.join(path, name) + ".partial", os.path.join(path, name))
        return
    if not is_s3(uri):
        raise TrainerError("InvalidConfig", f"outputUri {uri} must be a local path, file:// or s3://")
    import botocore.exceptions

    bucket, prefix = _split(uri)
    try:
        client = _client()
        for name in files:
            client.upload_file(os.path.join(folder, name), bucket, f"{prefix.rstrip('/')}/{name}".lstrip("/"))
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        raise TrainerError("StorageUnreachable", f"cannot write the adapter to {uri}: {error}") from None
