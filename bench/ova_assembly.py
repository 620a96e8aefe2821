"""Benchmark: OVA assembly against the upstream algorithm, cp and one SHA-256 pass.

    python bench/ova_assembly.py [--dir DIR] [--size-gib 2] [--runs 3] [--cold]

Makes (once, cached in DIR) a streamOptimized VMDK of about ``--size-gib``
GiB of incompressible data with qemu-img, then times, in one run and in
rotating order:

  a  our assembly (imagebuilder.ova: descriptor, single-read tar + manifest,
     verification pass with the .ova.sha256 digest)
  b  the upstream algorithm (hack/image-build-ova.py): hash the VMDK, write and
     hash the OVF, tar with Python's tarfile, hash the whole OVA
  c  cp of the VMDK
  d  one SHA-256 pass over the VMDK in Python

and prints the medians and the ratios b/a, a/c and a/d. ``--cold`` evicts
the VMDK from the page cache (posix_fadvise) before each timed run; by
default every variant reads it from a warm cache. Not a test: nothing is
asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import os
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


def run_ours(vmdk: Path, out: Path) -> None:
    assemble(plan_from_vmdks([vmdk], OS_NAME, VERSION, out))


def run_cp(vmdk: Path, out: Path) -> None:
    subprocess.run(["cp", str(vmdk), str(out / "copy.vmdk")], check=True)


def run_sha(vmdk: Path, out: Path) -> None:
    h = hashlib.sha256()
    with open(vmdk, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)


def evict(path: Path) -> None:
    with open(path, "rb") as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=REPO / "output" / "bench",
                        help="where the VMDK and the outputs go (its filesystem is measured)")
    parser.add_argument("--size-gib", type=float, default=2.0)
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

    variants = {"a": ("ours", run_ours),
                "b": ("upstream", lambda v, o: run_upstream(v, o, ovf_bytes)),
                "c": ("cp", run_cp), "d": ("sha256", run_sha)}
    times: dict[str, list[float]] = {k: [] for k in variants}
    order = list(variants)
    for run in range(args.runs):
        for key in order[run % 4:] + order[:run % 4]:
            out = Path(tempfile.mkdtemp(prefix=f"run-{key}-", dir=args.dir))
            os.sync()
            if args.cold:
                evict(vmdk)
            start = time.perf_counter()
            variants[key][1](vmdk, out)
            times[key].append(time.perf_counter() - start)
            shutil.rmtree(out)
    median = {k: statistics.median(v) for k, v in times.items()}

    fs = subprocess.run(["df", "-T", str(args.dir)], capture_output=True, text=True).stdout
    fstype = fs.splitlines()[-1].split()[1] if fs else "?"
    print(f"\nVMDK {size / (1 << 30):.2f} GiB on {args.dir} ({fstype}), {os.cpu_count()} CPUs, "
          f"{'cold' if args.cold else 'warm'} cache, median of {args.runs} runs")
    for key, (label, _) in variants.items():
        runs = ", ".join(f"{t:.2f}" for t in times[key])
        rate = size / median[key] / (1 << 20)
        print(f"  {key} {label:9s} {median[key]:7.2f} s  {rate:7.0f} MiB/s   ({runs})")
    a, b, c, d = (median[k] for k in "abcd")
    print(f"  b/a = {b / a:.2f}   (target >= 3)")
    print(f"  a/c = {a / c:.2f}")
    print(f"  a/d = {a / d:.2f}   (target <= 1.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
