#!/usr/bin/env python3
"""Upload a source directory to s3://bucket/prefix, creating the bucket when it is missing.

Usage: scripts/s3_upload.py DIRECTORY s3://BUCKET/PREFIX
The endpoint comes from S3_ENDPOINT_URL (MinIO: http://127.0.0.1:9000), credentials from
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, as for ingest. Prints one line per file.
"""

import os
import sys
from pathlib import Path


def upload_tree(directory, target, client) -> int:
    """Put every file under `directory` at `target` (s3://bucket/prefix), keeping relative paths; return the count."""
    bucket, _, prefix = target.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        client.create_bucket(Bucket=bucket)
        print(f"created bucket {bucket}")
    count = 0
    for path in sorted(Path(directory).rglob("*")):
        if path.is_file():
            key = "/".join(filter(None, [prefix, path.relative_to(directory).as_posix()]))
            client.upload_file(str(path), bucket, key)
            print(f"s3://{bucket}/{key}")
            count += 1
    return count


def s3_client():
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=os.environ.get("S3_ENDPOINT_URL") or None,
        config=Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required"),
    )


if __name__ == "__main__":
    if len(sys.argv) != 3 or not sys.argv[2].startswith("s3://"):
        sys.exit(__doc__)
    total = upload_tree(sys.argv[1], sys.argv[2], s3_client())
    print(f"uploaded {total} files to {sys.argv[2]}")
