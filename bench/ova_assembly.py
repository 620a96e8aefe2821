"""Benchmark: OVA assembly against the upstream algorithm, one SHA-256 pass and cp.

    python bench/ova_assembly.py [--dir /dev/shm/ib-bench] [--size-gib 1] [--runs 3] [--cold]

Makes (once, cached in DIR) a streamOptimized VMDK of ``--size-gib`` GiB of
incompressible data with qemu-img, then times, in one run and in rotating
order:

  ours      our assembly with the disk's digest on record (as Packer's export
            manifest gives it): descriptor, tar with the manifest up front, the
            disk copied by two threads that each read and write every other
            chunk and each keep one SHA-256 (the OVA's, the disk's) over every
            chunk; one read of the disk
  ours-2p   our assembly without a record: copy while hashing the disk, then a
            verification pass over the OVA for its ``.sha256``
  upstream  the upstream algorithm (hack/image-build-ova.py): hash the VMDK,
            write and hash the OVF, tar with Python's tarfile, hash the OVA
  sha256    one SHA-256 pass over the VMDK in Python (1 MiB reads)
  cp        cp of the VMDK
  floor     not a way to assemble: the work of the single read done by one
            thread with each 1 MiB chunk hot in its cache (read, hash for the
            OVA, hash for the disk, write). Its CPU time is the least the
            single read can cost; divided by the CPUs it is a lower bound for
            ours' wall time, printed as such.

and prints the medians (wall and CPU time) side by side with the ratios; the
goal is ours <= 1.2x the slower of sha256 and cp. DIR defaults to tmpfs
(/dev/shm) so the disk's speed does not hide the CPU's work. ``--cold`` evicts
the VMDK from the page cache before each run (meaningless on tmpfs).

Ours needs two SHA-256 passes and a copy, on two threads; sha256 and cp are
one thread each. On a machine whose CPUs are busy with other work (look at
the load average printed), ours gets less than two CPUs and its ratio grows
while the baselines' barely move: compare the CPU times and the floor then.
Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("IB_ROOT", str(REPO))

from imagebuilder.ova import assemble, plan_from_vmdks  # noqa: E402
from imagebuilder.ova.inputs import KnownDigest  # noqa: E402
from imagebuilder.ova.vmdk import read_vmdk  # noqa: E402

OS_NAME, VERSION = "ubuntu-2204", "v1.37.1"


def make_vmdk(directory: Path, size_gib: float) -> Path:
    """A streamOptimized VMDK of ``size_gib`` GiB of random data (reused when present)."""
    size = int(size_gib * (1 << 30))
    path = directory / f"bench-{size_gib:g}GiB.vmdk"
    if path.exists():
        info = read_vmdk(path)
        if info.stream_optimized and info.capacity == size:
            return path
    raw = directory / "bench.raw"
    print(f"making {path} ({size_gib:g} GiB of random data, qemu-img; once)", flush=True)
    with open(raw, "wb") as fh:
        left = size
        while left:
            block = os.urandom(min(left, 16 << 20))
            fh.write(block)
            left -= len(block)
    tmp = path.with_suffix(".tmp")
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o",
                    "subformat=streamOptimized", str(raw), str(tmp)], check=True)
    raw.unlink()
    os.replace(tmp, path)
    return path


def upstream_sha256(path: Path) -> str:
    """hack/image-build-ova.py's digest: 64 KiB reads."""
    m = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            data = f.read(65536)
            if not data:
                break
            m.update(data)
    return m.hexdigest()


def run_upstream(vmdk: Path, out: Path, ovf_bytes: bytes) -> None:
    """The upstream order of work: hash the VMDK, write and hash the OVF, tar with
    tarfile (``w|``, as upstream), then hash the whole OVA for ``.ova.sha256``."""
    stem = f"{OS_NAME}-kube-{VERSION}"
    disk = out / vmdk.name
    os.symlink(vmdk, disk)
    ovf = out / f"{stem}.ovf"
    ovf.write_bytes(ovf_bytes)
    mf = out / f"{stem}.mf"
    with open(mf, "w") as f:
        for p in (ovf, disk):
            f.write(f"SHA256({p.name})= {upstream_sha256(p)}\n")
    ova = out / f"{stem}.ova"
    with open(ova, "wb") as f:
        with tarfile.open(fileobj=f, mode="w|", dereference=True) as tar:
            for p in (ovf, mf, disk):
                tar.add(p, arcname=p.name)
    (out / f"{stem}.ova.sha256").write_text(upstream_sha256(ova))


def run_ours(vmdk: Path, out: Path, known: KnownDigest | None = None) -> None:
    plan = plan_from_vmdks([vmdk], OS_NAME, VERSION, out)
    if known is not None:
        plan.known_digests[vmdk] = known
    assemble(plan)


def run_cp(vmdk: Path, out: Path) -> None:
    subprocess.run(["cp", str(vmdk), str(out / "copy.vmdk")], check=True)


def run_sha(vmdk: Path, out: Path) -> None:
    h = hashlib.sha256()
    with open(vmdk, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)


def run_floor(vmdk: Path, out: Path) -> None:
    ova, disk = hashlib.sha256(), hashlib.sha256()
    buf = memoryview(bytearray(1 << 20))
    with open(vmdk, "rb", buffering=0) as src, open(out / "floor.ova", "wb", buffering=0) as dst:
        while count := src.readinto(buf):
            chunk = buf[:count]
            ova.update(chunk)
            disk.update(chunk)
            dst.write(chunk)


def cpu_seconds() -> float:
    """User and system time of this process and its finished children (cp):
    the work done, whatever else the machine is running."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def evict(path: Path) -> None:
    with open(path, "rb") as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("/dev/shm/ib-bench"),
                        help="where the VMDK and the outputs go (its filesystem is measured)")
    parser.add_argument("--size-gib", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cold", action="store_true",
                        help="evict the VMDK from the page cache before each run")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    vmdk = make_vmdk(args.dir, args.size_gib)
    size = vmdk.stat().st_size

    # The upstream variant tars the same descriptor ours writes.
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        run_ours(vmdk, Path(scratch))
        ovf_bytes = next(Path(scratch).glob("*.ovf")).read_bytes()

    known = KnownDigest("sha256", upstream_sha256(vmdk), vmdk.with_suffix(".mf"))
    variants = {"ours": lambda v, o: run_ours(v, o, known), "ours-2p": run_ours,
                "upstream": lambda v, o: run_upstream(v, o, ovf_bytes),
                "sha256": run_sha, "cp": run_cp, "floor": run_floor}
    times: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    order = list(variants)
    for run in range(args.runs):
        for key in order[run % len(order):] + order[:run % len(order)]:
            out = Path(tempfile.mkdtemp(prefix=f"run-{key}-", dir=args.dir))
            os.sync()
            if args.cold:
                evict(vmdk)
            cpu_start = cpu_seconds()
            start = time.perf_counter()
            variants[key](vmdk, out)
            times[key].append(time.perf_counter() - start)
            cpu[key].append(cpu_seconds() - cpu_start)
            shutil.rmtree(out)
    median = {k: statistics.median(v) for k, v in times.items()}

    fs = subprocess.run(["df", "-T", str(args.dir)], capture_output=True, text=True).stdout
    fstype = fs.splitlines()[-1].split()[1] if fs else "?"
    print(f"\nVMDK {size / (1 << 30):.2f} GiB on {args.dir} ({fstype}), {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}, "
          f"{'cold' if args.cold else 'warm'} cache, median of {args.runs} runs")
    slower = max(median["sha256"], median["cp"])
    for key in variants:
        runs = ", ".join(f"{t:.2f}" for t in times[key])
        rate = size / median[key] / (1 << 20)
        print(f"  {key:9s} {median[key]:7.2f} s  {rate:7.0f} MiB/s  "
              f"{median[key] / slower:5.2f}x the slower of sha256/cp  "
              f"cpu {statistics.median(cpu[key]):5.2f} s   ({runs})")
    ours = median["ours"]
    bound = statistics.median(cpu["floor"]) / (os.cpu_count() or 1)
    print(f"  ours / max(sha256, cp) = {ours / slower:.2f}   (goal <= 1.2: "
          f"{'met' if ours <= 1.2 * slower else 'NOT met'})")
    print(f"  lower bound for ours   = {bound / slower:.2f}   (floor's CPU time / "
          f"{os.cpu_count()} CPUs = {bound:.2f} s, with the CPUs to itself)")
    print(f"  upstream / ours        = {median['upstream'] / ours:.2f}")
    print(f"  ours-2p / ours         = {median['ours-2p'] / ours:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
