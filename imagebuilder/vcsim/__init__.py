"""The vCenter simulator (govmomi's vcsim) for tests and for trying builds.

``build()`` compiles our small Go program ``main.go`` (over Debian's govmomi
sources) once into a cache directory; ``Simulator`` runs it on a free local
port; ``vsphere_config()`` gives the matching ``vsphere.json`` settings for
the simulator's default inventory.

Debian's simulator has no export. ``export.go`` adds ``ExportVm`` and
``OvfManager.CreateDescriptor``; it must be compiled into the simulator
package itself (it uses the package's NFC lease internals), so ``build()``
copies Debian's simulator sources into a private GOPATH entry in the cache,
placed before ``/usr/share/gocode``, adds ``export.go`` and routes the NFC
handler's GET branch to it. Nothing of govmomi is kept in this repository.

    with Simulator() as sim:
        write_vsphere_json(sim, Path("vsphere.json"))
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from imagebuilder.errors import BuildError, InputError
from imagebuilder.processes import start_child
from imagebuilder.vsphere.settings import defaults as vsphere_defaults

MAIN_GO = Path(__file__).with_name("main.go")
#: Go files compiled into govmomi's simulator package.
PACKAGE_GO = (Path(__file__).with_name("export.go"),)
GOPATH = Path("/usr/share/gocode")
SIMULATOR_IMPORT = "github.com/vmware/govmomi/simulator"
GOVMOMI = GOPATH / "src" / SIMULATOR_IMPORT
UUID = GOPATH / "src/github.com/google/uuid"
APT_PACKAGES = "golang-go golang-github-vmware-govmomi-dev golang-github-google-uuid-dev"
#: The NFC handler's GET branch in Debian's http_nfc_lease.go (0.24) copies the
#: file into a nil writer; it is replaced by a call of export.go's serveNFCGet.
NFC_GET = ("http_nfc_lease.go", "\t\tsrc = f\n",
           "\t\tserveNFCGet(w, r, f) // imagebuilder: export.go\n\t\treturn\n")
#: Binaries of other source versions unused for this long are removed.
STALE_BINARY_SECONDS = 7 * 24 * 3600


def default_cache_dir() -> Path:
    """Where the compiled simulator is kept: ``$XDG_CACHE_HOME/imagebuilder``
    or ``~/.cache/imagebuilder``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "imagebuilder"


def _sources_digest() -> str:
    """A digest of everything compiled: our Go files and the govmomi file we patch."""
    digest = hashlib.sha256()
    nfc = GOVMOMI / NFC_GET[0]
    for path in (MAIN_GO, *PACKAGE_GO, nfc):
        digest.update(path.name.encode() + b"\0")
        digest.update(path.read_bytes() if path.is_file() else b"(missing)")
        digest.update(b"\0")
    digest.update("\0".join(NFC_GET).encode())
    return digest.hexdigest()[:12]


def _private_gopath(root: Path) -> Path:
    """A GOPATH entry holding Debian's govmomi with the simulator package copied
    and our files added to it; the rest of govmomi is linked, not copied (Go
    looks a package up in the first GOPATH entry that has its directory)."""
    package = root / "src" / SIMULATOR_IMPORT
    package.parent.mkdir(parents=True)
    for entry in GOVMOMI.parent.iterdir():
        if entry.name != GOVMOMI.name:
            (package.parent / entry.name).symlink_to(entry)
    shutil.copytree(GOVMOMI, package, ignore=shutil.ignore_patterns("*_test.go", "testdata"))
    for source in PACKAGE_GO:
        shutil.copyfile(source, package / source.name)
    name, old, new = NFC_GET
    target = package / name
    text = target.read_text()
    if text.count(old) != 1:
        raise BuildError(f"Cannot add export to the vCenter simulator: {GOVMOMI / name} is not "
                         f"the version imagebuilder knows (expected one {old.strip()!r} in its "
                         "NFC handler's GET branch); adapt NFC_GET in "
                         "imagebuilder/vcsim/__init__.py")
    target.write_text(text.replace(old, new))
    return root


def build(cache_dir: Path | None = None) -> Path:
    """Compile the simulator once and return the path of the binary.

    The binary's name carries a digest of every source we compile (``main.go``,
    ``export.go`` and the govmomi file we patch), so an edited source is rebuilt
    while an existing binary is reused; binaries of other versions unused for a
    week are removed (several checkouts may share the cache). It is compiled
    under a temporary name and renamed into place, so parallel callers never
    see a partial file.
    Raises ``InputError`` when Go or the govmomi sources are missing and
    ``BuildError`` (with Go's output) when compiling fails.
    """
    go = shutil.which("go")
    missing = [what for what, ok in (("the go compiler", go),
                                     (f"the govmomi sources ({GOVMOMI})", GOVMOMI.is_dir()),
                                     (f"the uuid sources ({UUID})", UUID.is_dir())) if not ok]
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    binary = cache / f"vcsim-{_sources_digest()}"
    if binary.is_file() and os.access(binary, os.X_OK):
        os.utime(binary)  # in use: not stale
        return binary
    if missing:
        raise InputError(
            f"Cannot build the vCenter simulator: missing {', '.join(missing)}. "
            f"Install them with: sudo apt-get install {APT_PACKAGES}")

    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{binary.name}-", dir=cache)
    os.close(fd)
    try:
        with tempfile.TemporaryDirectory(prefix=".gopath-", dir=cache) as gopath:
            private = _private_gopath(Path(gopath))
            env = dict(os.environ, GOPATH=f"{private}{os.pathsep}{GOPATH}", GO111MODULE="off")
            if not any(env.get(k) for k in ("GOCACHE", "XDG_CACHE_HOME", "HOME")):
                env["GOCACHE"] = str(cache / "go-build")
            result = subprocess.run([go, "build", "-o", tmp, str(MAIN_GO)], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, check=False)
        if result.returncode != 0:
            raise BuildError(f"Building the vCenter simulator from {MAIN_GO} failed "
                             f"(go exited with {result.returncode}):\n{result.stdout.strip()}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, binary)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    stale = time.time() - STALE_BINARY_SECONDS
    for old in cache.glob("vcsim-*"):  # builds of other versions of the sources
        try:
            if old != binary and old.stat().st_mtime < stale:
                old.unlink()
        except FileNotFoundError:
            pass
    return binary


class Simulator:
    """A running vCenter simulator on 127.0.0.1 with a free port.

    Use ``start()``/``stop()`` or ``with Simulator() as sim:``. Once started,
    ``url`` (``https://127.0.0.1:PORT/sdk``), ``host`` (``127.0.0.1:PORT``),
    ``username`` and ``password`` describe how to connect. The server's
    certificate is self-signed: clients must skip verification.
    """

    def __init__(self, username: str = "user", password: str = "pass",
                 binary: Path | None = None, cache_dir: Path | None = None,
                 timeout: float = 30.0, model: dict[str, int] | None = None,
                 power_off_after: float = 0.0, fail_export_get: bool = False) -> None:
        """``model`` sets the inventory size by the Go program's flags, for
        example ``{"dc": 1, "cluster": 1, "host": 3, "standalone-host": 1,
        "vm": 2, "ds": 1, "pg": 1}`` (these are the defaults).

        ``power_off_after`` (seconds, 0 = never): power off each VM that
        long after it is powered on, as a guest does at the end of an
        unattended install; Packer's vsphere-iso with ``"communicator":
        "none"`` waits for that shutdown.

        ``fail_export_get``: every export download (the NFC GET of a disk)
        sends half of the disk and then breaks the connection."""
        self.username = username
        self.password = password
        self.binary = binary
        self.cache_dir = cache_dir
        self.timeout = timeout
        self.model = dict(model or {})
        self.power_off_after = power_off_after
        self.fail_export_get = fail_export_get
        self.url = ""
        self.host = ""
        self.pid: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None

    def start(self) -> Simulator:
        """Start the simulator and wait until it serves; return self.

        Raises ``BuildError`` with the simulator's stderr when it exits early
        or is not ready within ``timeout`` seconds.
        """
        if self._proc is not None:
            raise RuntimeError("the simulator is already running")
        binary = self.binary or build(self.cache_dir)
        self._workdir = tempfile.TemporaryDirectory(prefix="imagebuilder-vcsim-")
        work = Path(self._workdir.name)
        ready = work / "ready.json"
        stderr_path = work / "stderr.txt"
        # The password in the environment: anyone can read a process's arguments.
        args = [str(binary), "-listen", "127.0.0.1:0", "-username", self.username,
                "-ready-file", str(ready)]
        for flag, value in self.model.items():
            args += [f"-{flag}", str(int(value))]
        if self.power_off_after > 0:
            args += ["-power-off-after", f"{int(self.power_off_after * 1000)}ms"]
        if self.fail_export_get:
            args.append("-fail-export-get")
        # A session of its own: a Ctrl-C at the terminal must not stop it before
        # the builds' cleanups have used it; it still dies with us (start_child).
        with open(stderr_path, "wb") as stderr:
            self._proc = start_child(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=stderr, start_new_session=True,
                                     env={**os.environ, "VCSIM_PASSWORD": self.password})
        try:
            info = self._wait_until_ready(ready, stderr_path, binary)
        except BaseException:  # not ready, or Ctrl-C/SIGTERM meanwhile: nothing stays
            self.stop()
            raise
        self.url, self.host, self.pid = info["url"], info["host"], info["pid"]
        return self

    def _wait_until_ready(self, ready: Path, stderr_path: Path, binary: Path) -> dict[str, Any]:
        """The ready file's JSON once the simulator serves; BuildError with its stderr
        when it exits first or takes longer than ``timeout``."""
        assert self._proc is not None
        deadline = time.monotonic() + self.timeout
        while not ready.exists():
            failure = None
            if self._proc.poll() is not None:
                failure = f"exited with code {self._proc.returncode}"
            elif time.monotonic() > deadline:
                failure = f"was not ready within {self.timeout:g} seconds"
            if failure:
                output = stderr_path.read_text(errors="replace").strip()
                raise BuildError(f"The vCenter simulator ({binary}) {failure}."
                                 + (f" Its stderr:\n{output}" if output else ""))
            time.sleep(0.05)
        return json.loads(ready.read_text())

    def stop(self, grace: float = 10.0) -> None:
        """Stop the simulator (SIGTERM, then SIGKILL after ``grace`` seconds)
        and wait for it to exit. Safe to call more than once."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    @property
    def running(self) -> bool:
        """Whether the simulator process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def vsphere_config(sim: Simulator, **overrides: str) -> dict[str, str]:
    """The ``vsphere.json`` settings (every field of vsphere/settings.py, all
    strings) that target the simulator's default inventory; ``overrides``
    replace or add keys."""
    config = vsphere_defaults()
    config.update(vcenter_server=sim.host, username=sim.username, password=sim.password,
                  insecure_connection="true", datacenter="DC0", cluster="DC0_C0",
                  datastore="LocalDS_0", network="VM Network")
    config.update(overrides)
    return config


def write_vsphere_json(sim: Simulator, path: Path, **overrides: str) -> Path:
    """Write ``vsphere_config(sim, **overrides)`` to ``path`` as JSON, readable
    only by its owner (it holds a password); return the path."""
    path = Path(path)
    data = json.dumps(vsphere_config(sim, **overrides), indent=2) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)  # also when the file already existed
        f.write(data)
    return path
