"""Block-drawn random ids: never repeated, right sizes, and a forked child never reuses its parent's block."""

from __future__ import annotations

import os

from upload_service.randomness import BLOCK_SIZE, random_bits, random_bytes, random_hex


def test_values_do_not_repeat_across_many_blocks():
    values = [random_hex(16) for _ in range(BLOCK_SIZE)]  # 16 blocks' worth
    assert len(set(values)) == len(values)
    assert all(len(value) == 32 and int(value, 16) >= 0 for value in values)


def test_sizes_and_bit_ranges():
    assert len(random_bytes(BLOCK_SIZE + 10)) == BLOCK_SIZE + 10  # more than a block at once
    draws = [random_bits(50) for _ in range(2000)]
    assert max(draws) < 2**50
    assert max(draws).bit_length() >= 45  # the top bits are used, not only the low ones


def test_a_forked_child_draws_fresh_bytes():
    random_bytes(1)  # the parent has a partly used block
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next draw, then leave at once
        os.write(write_end, random_bytes(32))
        os._exit(0)
    os.close(write_end)
    child = os.read(read_end, 32)
    os.close(read_end)
    os.waitpid(pid, 0)
    assert len(child) == 32
    assert child != random_bytes(32)  # without the reset both would take the same slice of the same block
