"""``ova verify`` on hostile OVAs (issue 16): every class of damaged, oversized or
misleading input gets its one line and exit code, in bounded memory, without a
traceback or a hang; and ``ova assemble`` stopped by SIGTERM or SIGHUP leaves
nothing behind.

The OVAs are crafted from a good one (tests/helpers/hostile_ova.py); the same
corpus goes to deploy-ova and publish in tests/vsphere/test_hostile_import.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from helpers.common import REPO
from helpers.hostile_ova import CASES, DENSE, RSS_LIMIT, Good, run_measured
from helpers.ova import MiB, make_vmdk

from imagebuilder.config.checkout import Checkout
from imagebuilder.ova import assemble, plan_from_vmdks


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Good:
    """The members of a good OVA our assembler wrote (one per module)."""
    tmp = tmp_path_factory.mktemp("good")
    disk = make_vmdk(tmp / "d.vmdk", data=[(MiB, os.urandom(2 * MiB))])
    ova = assemble(plan_from_vmdks([disk], "ubuntu-2204", "v1.37.1", tmp / "out",
                                   checkout=Checkout(REPO))).ova
    return Good.read(ova)


def verify(path) -> tuple[int, str, str, int]:
    return run_measured([sys.executable, "-m", "imagebuilder", "ova", "verify", str(path)],
                        env=dict(os.environ), timeout=120)


def expected(case, good) -> str:
    return case.line.format(stem=good.stem, disk=good.disk)


@pytest.mark.parametrize("case", CASES + [DENSE], ids=lambda c: c.id)
def test_ova_verify_answers_every_hostile_ova_in_a_line(case, good, tmp_path):
    path = case.make(good, tmp_path)
    before = sorted(os.listdir(tmp_path))
    code, out, err, rss = verify(path)
    assert code == case.code, (out, err)
    assert "Traceback" not in err
    if code:
        assert expected(case, good) in err
        assert err.startswith("error: ")
        assert len(err.splitlines()) <= 12  # a heading and at most ten problems and a count
    else:
        assert expected(case, good) in out
    assert rss < RSS_LIMIT, f"peak RSS {rss >> 20} MiB"
    assert sorted(os.listdir(tmp_path)) == before  # verify writes nothing


def test_the_good_ova_still_verifies(good, tmp_path):
    from helpers.hostile_ova import write_members
    code, out, err, rss = verify(write_members(tmp_path / f"{good.stem}.ova", good.members))
    assert code == 0, err
    assert f"ok: 3 members, disks {good.disk} (64 MiB)" in out
    assert rss < RSS_LIMIT


def wait_for(condition, what: str, timeout: float = 120) -> None:
    """Poll ``condition`` until it holds (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signal_stops_ova_assemble_and_leaves_nothing(signum, checkout, tmp_path):
    """A disk that must be converted (monolithicSparse, 256 MiB of data): once the
    work directory appears the assembler is frozen (SIGSTOP), signalled and
    thawed; it exits 128 + the signal and leaves no partial file, no work
    directory and not the output directory it made."""
    disk = make_vmdk(tmp_path / "big.vmdk", "monolithicSparse", size=256 * MiB,
                     data=[(i * 4 * MiB, os.urandom(4 * MiB)) for i in range(48)])
    out = tmp_path / "new" / "out"
    proc = subprocess.Popen([sys.executable, "-m", "imagebuilder", "ova", "assemble", "--vmdk",
                             str(disk), "--os", "ubuntu-2204", "--kubernetes-version", "v1.37.1",
                             "--output", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: out.is_dir() and any(p.name.endswith(".work") or ".work." in p.name
                                              for p in out.iterdir()), "the work directory")
        proc.send_signal(signal.SIGSTOP)
        proc.send_signal(signum)
        proc.send_signal(signal.SIGCONT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signum, err
    assert f"interrupted ({signum.name}); no partial OVA was left behind" in err
    assert "Traceback" not in err
    assert not (tmp_path / "new").exists()  # the directories it made, gone with their contents


@pytest.mark.parametrize("size, text", [(0, "0 bytes"), (1, "1 byte"), (1023, "1023 bytes"),
                                        (1536, "1.5 KiB"), (64 * MiB, "64 MiB"),
                                        (3 << 30, "3.0 GiB"), (62 << 40, "62 TiB")])
def test_sizes_in_messages_read_right_at_every_scale(size, text):
    """"about 0 MiB are needed and only 0 MiB are free" came from ``size >> 20``."""
    from imagebuilder.ova.limits import size_text
    assert size_text(size) == text


def test_the_free_space_message_names_small_sizes(tmp_path):
    import shutil

    from imagebuilder.ova.assembly_plan import _output_problems
    from imagebuilder.ova.vmdk import read_vmdk
    disk = read_vmdk(make_vmdk(tmp_path / "d.vmdk", size=MiB, data=[(0, b"x" * 4096)]))
    free = shutil.disk_usage(tmp_path).free
    assert _output_problems(tmp_path, [disk]) == []
    huge = type(disk)(disk.path, disk.create_type, disk.capacity, free + 1, disk.extents,
                      disk.header, disk.ddb)
    [problem] = _output_problems(tmp_path, [huge])
    assert " 0 MiB" not in problem and "bytes are needed" not in problem
    assert problem.startswith(f"{tmp_path}: about ") and " are needed and only " in problem
