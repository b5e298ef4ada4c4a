"""Property test (hypothesis) against a real server: however a tus upload is cut into PATCHes, the file it
becomes has exactly the bytes sent and their sha256.

The plans vary what a client may vary: chunk sizes (empty and 1-byte chunks included), the first chunk in the
creating POST (creation-with-upload), the length given late in some PATCH (creation-defer-length), an
Upload-Checksum on some chunks, and partial uploads joined by a final one (concatenation). Runs on every
storage backend that can resume (local disk, S3 on SeaweedFS).
"""

from __future__ import annotations

import base64
import hashlib
import random
from dataclasses import dataclass

import httpx
from hypothesis import HealthCheck, example, given, settings, strategies as st

from .servers import Server
from .tus import OCTETS, TUS, checksum, create, metadata, patch, tus_backend  # noqa: F401 (autouse fixture)

S3_PART = 8 * 1024 * 1024  # the S3 backend's first multipart part: a plan that crosses it cuts a part mid-chunk


@dataclass(frozen=True)
class Plan:
    """One way to send ``size`` bytes (made from ``seed``) as tus requests."""

    seed: int
    size: int
    chunks: tuple[int, ...]  # sizes of the PATCH bodies in order (after the creating POST's body)
    first_in_post: int  # bytes sent with the creating POST (creation-with-upload); 0: a plain POST
    length_in_patch: int | None  # creation-defer-length: index of the PATCH that says Upload-Length
    checksums: tuple[str | None, ...]  # per PATCH: an Upload-Checksum algorithm, or None

    def data(self) -> bytes:
        return random.Random(self.seed).randbytes(self.size)


def chunked(size: int, lengths: list[int]) -> list[int]:
    """``lengths`` cut down to cover ``size`` exactly, with whatever is left as a last chunk."""
    chunks, left = [], size
    for length in lengths:
        chunks.append(min(length, left))
        left -= chunks[-1]
    return chunks + [left] if left or not chunks else chunks


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    size = draw(st.one_of(st.just(0), st.integers(1, 64), st.integers(65, 300_000)))
    first_in_post = draw(st.one_of(st.just(0), st.integers(0, size)))
    chunks = chunked(size - first_in_post,
                     draw(st.lists(st.one_of(st.just(0), st.just(1), st.integers(2, 120_000)), max_size=12)))
    deferred = draw(st.booleans())
    return Plan(
        seed=draw(st.integers(0, 2**32)), size=size, chunks=tuple(chunks), first_in_post=first_in_post,
        length_in_patch=draw(st.integers(0, len(chunks) - 1)) if deferred else None,
        checksums=tuple(draw(st.lists(st.sampled_from([None, "sha1", "md5", "sha256"]),
                                      min_size=len(chunks), max_size=len(chunks)))),
    )


def start(client: httpx.Client, plan: Plan, data: bytes) -> str:
    """The creating POST, with the first bytes when the plan says so."""
    if not plan.first_in_post:
        return create(client, None if plan.length_in_patch is not None else plan.size,
                      Upload_Metadata=metadata(filename="property.bin"))
    headers = {**OCTETS, "Upload-Metadata": metadata(filename="property.bin")}
    headers.update({"Upload-Defer-Length": "1"} if plan.length_in_patch is not None
                   else {"Upload-Length": str(plan.size)})
    answer = client.post("/api/tus/", headers=headers, content=data[:plan.first_in_post])
    assert answer.status_code == 201, answer.text
    assert int(answer.headers["Upload-Offset"]) == plan.first_in_post
    return answer.headers["Location"]


def send(client: httpx.Client, url: str, plan: Plan, data: bytes) -> str:
    """Every PATCH of the plan, each checked as it answers; the file id the upload became."""
    offset, length_known = plan.first_in_post, plan.length_in_patch is None
    file_id = None
    for index, size in enumerate(plan.chunks):
        chunk, headers = data[offset:offset + size], {}
        if index == plan.length_in_patch:
            headers["Upload_Length"], length_known = str(plan.size), True
        if plan.checksums[index]:
            headers["Upload_Checksum"] = checksum(plan.checksums[index], chunk)
        answer = patch(client, url, offset, chunk, **headers)
        assert answer.status_code == 204, (index, answer.status_code, answer.text)
        offset += size
        assert int(answer.headers["Upload-Offset"]) == offset
        complete = length_known and offset == plan.size
        assert ("Upload-File-Id" in answer.headers) == complete, (index, dict(answer.headers))
        file_id = answer.headers.get("Upload-File-Id", file_id)
    return file_id


@given(plan=plans())
@example(plan=Plan(seed=1, size=0, chunks=(0,), first_in_post=0, length_in_patch=0, checksums=(None,)))
@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_any_chunking_of_a_tus_upload_stores_the_same_bytes(server: Server, plan: Plan) -> None:
    client, data = server.client("alice"), plan.data()
    url = start(client, plan, data)
    if plan.length_in_patch is None and plan.size == plan.first_in_post:
        file_id = client.head(url, headers=TUS).headers["Upload-File-Id"]  # complete at its creation
        for size in plan.chunks:  # only empty PATCHes are left: they change nothing
            assert size == 0 and patch(client, url, plan.size, b"").status_code == 204
    else:
        file_id = send(client, url, plan, data)
    described = client.get(f"/api/files/{file_id}").json()
    assert described["size"] == plan.size
    assert described["sha256"] == hashlib.sha256(data).hexdigest()
    assert described["filename"] == "property.bin"
    assert client.get(described["url"]).content == data
    head = client.head(url, headers=TUS)
    assert head.headers["Upload-File-Id"] == file_id and int(head.headers["Upload-Offset"]) == plan.size
    assert client.delete(f"/api/files/{file_id}").status_code == 204  # keep the shared server's store small


CHUNK_LENGTHS = st.lists(st.one_of(st.just(0), st.just(1), st.integers(2, 50_000)), max_size=6)


@given(seed=st.integers(0, 2**32), parts=st.lists(st.tuples(st.integers(0, 60_000), CHUNK_LENGTHS), min_size=1,
                                                  max_size=4))
@settings(max_examples=15, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_partial_uploads_chunked_any_way_concatenate_to_the_same_bytes(
        server: Server, seed: int, parts: list[tuple[int, list[int]]]) -> None:
    client, rng = server.client("alice"), random.Random(seed)
    pieces, urls = [rng.randbytes(size) for size, _ in parts], []
    for piece, (size, lengths) in zip(pieces, parts, strict=True):
        url = create(client, size, Upload_Concat="partial")
        offset = 0
        for length in chunked(size, lengths):
            answer = patch(client, url, offset, piece[offset:offset + length])
            assert answer.status_code == 204 and "Upload-File-Id" not in answer.headers, answer.text
            offset += length
        urls.append(url)
    final = client.post("/api/tus/", headers={**TUS, "Upload-Concat": "final;" + " ".join(urls),
                                              "Upload-Metadata": metadata(filename="joined.bin")})
    assert final.status_code == 201, final.text
    whole = b"".join(pieces)
    described = client.get(f"/api/files/{final.headers['Upload-File-Id']}").json()
    assert (described["size"], described["sha256"]) == (len(whole), hashlib.sha256(whole).hexdigest())
    assert client.get(described["url"]).content == whole
    assert client.delete(f"/api/files/{described['id']}").status_code == 204


def test_a_chunk_with_a_wrong_checksum_counts_for_nothing_and_the_retry_completes(server: Server) -> None:
    client, data = server.client("alice"), random.Random(3).randbytes(1000)
    url = create(client, len(data))
    wrong = base64.b64encode(hashlib.sha256(b"not this").digest()).decode()
    assert patch(client, url, 0, data[:600], Upload_Checksum=f"sha256 {wrong}").status_code == 460
    assert patch(client, url, 0, data[:600], Upload_Checksum=checksum("sha256", data[:600])).status_code == 204
    done = patch(client, url, 600, data[600:])
    assert done.status_code == 204
    assert client.get(f"/api/files/{done.headers['Upload-File-Id']}/content").content == data


def test_an_upload_past_one_s3_part_reports_its_own_length_once_done(server: Server) -> None:
    """Found by the property test: on S3, finishing counted the last bytes twice (HEAD said 3 bytes too many)."""
    client, data = server.client("alice"), random.Random(7).randbytes(S3_PART + 3)
    url = create(client, len(data))
    assert patch(client, url, 0, data[:S3_PART + 1]).status_code == 204
    done = patch(client, url, S3_PART + 1, data[S3_PART + 1:])
    assert done.status_code == 204 and int(done.headers["Upload-Offset"]) == len(data)
    head = client.head(url, headers=TUS)
    assert int(head.headers["Upload-Offset"]) == int(head.headers["Upload-Length"]) == len(data)
    assert client.get(f"/api/files/{done.headers['Upload-File-Id']}").json()["size"] == len(data)
