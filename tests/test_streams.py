"""Reading files for ingest: lines split in linear time, over-long lines cut, hashes of the whole file."""

import hashlib
import io
import subprocess
import sys
import textwrap

from conftest import ROOT
from jobs.parsing import MAX_LINE
from jobs.streams import HashingLines


class _Tracker:
    def __init__(self):
        self.done = 0

    def advance(self, amount):
        self.done += amount


def test_hashing_lines_cut_an_over_long_line_but_hash_and_count_every_byte():
    data = b"a,b\n" + b"7" * (3 * MAX_LINE) + b"\n1,2\nlast"
    tracker = _Tracker()
    lines = HashingLines(io.BytesIO(data), tracker)
    got = list(lines)
    assert got[0] == b"a,b" and got[2:] == [b"1,2", b"last"]
    assert len(got[1]) == MAX_LINE + 1 and got[1].startswith(b"777")
    assert lines.hexdigest() == hashlib.sha256(data).hexdigest() and tracker.done == len(data)


def test_hashing_lines_keep_lines_that_straddle_chunks_whole():
    data = b"".join(f"{i},{i * 7}\n".encode() for i in range(50_000))
    assert list(HashingLines(io.BytesIO(data), _Tracker())) == data.split(b"\n")[:-1]


def test_hashing_lines_split_a_128_megabyte_line_in_linear_time():
    # A quadratic splitter needs minutes here (25 s for 50 MB was seen); linear takes about a second.
    # The bound is a guard against the quadratic shape, not a speed claim.
    code = textwrap.dedent(f"""
        import io, sys
        sys.path.insert(0, {str(ROOT)!r})
        from jobs.streams import HashingLines
        class T:
            def advance(self, n): pass
        data = b"h\\n" + b"9" * (128 << 20) + b"\\nx\\n"
        print(sum(len(line) for line in HashingLines(io.BytesIO(data), T())))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == 1 + MAX_LINE + 1 + 1
