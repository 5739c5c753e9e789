"""Running out of space while writing (a full disk, a quota; here a file-size limit, which fails the write the
same way) is one line naming the file, exit code 2, with the file that was there before left intact."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
from simclr.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _simclr_limited(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", LIMITED, *argv], capture_output=True, text=True, timeout=300,
                          check=False)


def test_a_checkpoint_that_does_not_fit_is_one_line_and_the_old_file_stays(tmp_path: Path,
                                                                          make_checkpoint) -> None:
    source = make_checkpoint(tmp_path / "source.pt", width=0.5)  # ~3 MB: more than the 200 kB allowed
    out = tmp_path / "slim.pt"
    out.write_bytes(b"the export of yesterday")
    done = _simclr_limited(["export", "--checkpoint", str(source), "--format", "simclr", "--out", str(out)])
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"simclr: error: cannot write {out}: File too large"), done.stderr
    assert out.read_bytes() == b"the export of yesterday"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
