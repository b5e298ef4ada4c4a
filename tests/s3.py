"""An S3 server for the tests (moto's server mode on 127.0.0.1) and a look into a bucket from outside.

The service only gets an endpoint URL, a bucket and credentials, as it would for MinIO or AWS.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from .servers import ROOT, free_port, refuse_in_fast_tests, wait_until_up

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test-key-id", "AWS_SECRET_ACCESS_KEY": "test-secret-key"}
REGION = "us-east-1"


@dataclass
class S3Server:
    """moto's S3 server as a subprocess (``tests.moto_s3``: with S3's per-key atomicity); ``bucket()`` makes a
    fresh bucket for one service."""

    url: str
    process: subprocess.Popen

    @classmethod
    def start(cls, log_dir: Path) -> S3Server:
        refuse_in_fast_tests("moto's S3 server")
        port = free_port()
        log = (log_dir / f"moto-{port}.log").open("wb")
        process = subprocess.Popen([sys.executable, "-m", "tests.moto_s3", "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url + "/moto-api/", process)
        return cls(url, process)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)

    def client(self) -> Any:
        return boto3.client("s3", endpoint_url=self.url, region_name=REGION,
                            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                            config=Config(request_checksum_calculation="when_required"))

    def bucket(self, prefix: str = "") -> Bucket:
        name = f"uploads-{secrets.token_hex(6)}"
        self.client().create_bucket(Bucket=name)
        return Bucket(self, name, prefix)


@dataclass
class Bucket:
    """One bucket (and prefix) a service stores in, and what the tests can see in it."""

    server: S3Server
    name: str
    prefix: str = ""

    def settings(self) -> dict[str, str]:
        """The service's environment for this bucket: only what an operator would set."""
        return {"storage_backend": "s3", "s3_bucket": self.name, "s3_endpoint_url": self.server.url,
                "s3_region": REGION, "s3_prefix": self.prefix, **CREDENTIALS}

    def keys(self, under: str = "") -> list[str]:
        client = self.server.client()
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=self.prefix + under)
        return [item["Key"][len(self.prefix):] for page in pages for item in page.get("Contents", [])]

    def records(self, area: str = "") -> list[str]:
        """Keys of visible objects (``files/...``, ``temp/...``)."""
        return [key[len("objects/"):] for key in self.keys("objects/" + area)]

    def multipart_uploads(self) -> list[dict[str, Any]]:
        client = self.server.client()
        return client.list_multipart_uploads(Bucket=self.name, Prefix=self.prefix).get("Uploads", [])

    def leftovers(self) -> list[str]:
        """Everything that is not a visible object or its bytes: journal entries, unreferenced blobs, parts."""
        client = self.server.client()
        referenced = {f"blobs/{self._blob_of(client, key)}" for key in self.keys("objects/")}
        loose = [key for key in self.keys() if not key.startswith("objects/") and key not in referenced]
        return loose + [f"multipart:{upload['Key']}" for upload in self.multipart_uploads()]

    def wait_out(self, seconds: float, timeout: float = 15) -> None:
        """Return once whatever was written before this call is more than ``seconds`` old by the S3 server's
        clock, the way a sweep tells stale from live (a listing's Date against each LastModified, both in whole
        seconds): a canary object written now tells, and is removed again."""
        client = self.server.client()
        canary = f"{self.prefix}wait-out-canary-{secrets.token_hex(4)}"
        client.put_object(Bucket=self.name, Key=canary, Body=b"")
        deadline = time.monotonic() + timeout
        try:
            while True:
                listing = client.list_objects_v2(Bucket=self.name, Prefix=canary)
                now = parsedate_to_datetime(listing["ResponseMetadata"]["HTTPHeaders"]["date"])
                if (now - listing["Contents"][0]["LastModified"]).total_seconds() > seconds:
                    return
                if time.monotonic() > deadline:
                    raise AssertionError(f"the S3 server's clock did not pass {seconds} s in {timeout} s")
                time.sleep(0.1)
        finally:
            client.delete_object(Bucket=self.name, Key=canary)

    def _blob_of(self, client: Any, record: str) -> str:
        return json.loads(client.get_object(Bucket=self.name, Key=self.prefix + record)["Body"].read())["blob"]
