"""Early writeback: the writer hands each written stretch of the file to the disk once, at the right offsets."""

from __future__ import annotations

import hashlib
import itertools
import os
from concurrent.futures import ThreadPoolExecutor

from upload_service.builtin.local_storage import buffered
from upload_service.builtin.local_storage.buffered import WRITE_BUFFER, WRITEBACK_STEP, BufferedFileWriter
from upload_service.builtin.local_storage.writeback import start_writeback


async def test_written_ranges_are_handed_to_the_disk_in_order_from_the_start_offset(tmp_path, monkeypatch):
    calls: list[tuple[int, int]] = []

    def spy(fd: int, offset: int, length: int) -> None:
        calls.append((offset, length))
        start_writeback(fd, offset, length)  # the real call too: it must accept these ranges

    monkeypatch.setattr(buffered, "start_writeback", spy)
    path = tmp_path / "data"
    path.write_bytes(b"p" * 1000)
    fd = os.open(path, os.O_WRONLY)
    os.lseek(fd, 1000, os.SEEK_SET)  # a resumable upload appends at its offset
    hasher = hashlib.sha256()
    data = os.urandom(3 * WRITEBACK_STEP + 12_345)
    with ThreadPoolExecutor(1) as pool:
        writer = BufferedFileWriter(fd, [hasher], pool)
        for start in range(0, len(data), 300_000):
            await writer.write(data[start:start + 300_000])
        await writer.finish()
    os.close(fd)
    assert path.read_bytes() == b"p" * 1000 + data
    assert hasher.hexdigest() == hashlib.sha256(data).hexdigest()
    assert len(calls) >= 2
    assert calls[0][0] == 1000
    for (offset, length), (next_offset, _) in itertools.pairwise(calls):
        assert length >= WRITEBACK_STEP and next_offset == offset + length  # no gap, no overlap
    handed = calls[-1][0] + calls[-1][1]
    assert handed <= 1000 + len(data)
    assert 1000 + len(data) - handed < WRITEBACK_STEP + WRITE_BUFFER  # only a short tail is left to the fsync
