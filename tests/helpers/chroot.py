"""Helpers for the chroot tests in tests/content/ (no tests here).

A Debian root to provision through Ansible's chroot connection, and stand-in
releases. ``make_debian_root`` debootstraps Debian stable (minbase, plus what Ansible and the
playbooks' become need) into a directory, caching the result as a tarball under
``~/.cache/imagebuilder`` for a week. ``StandInReleases`` writes archives named
and laid out like the real containerd, runc, crictl, Kubernetes and CNI
releases, with their sha256, and serves them on 127.0.0.1.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from helpers.common import REPO, write_json
from helpers.planning import plan_for
from imagebuilder.planning.inspect import ansible_vars

SUITE = "stable"
MIRROR = os.environ.get("IB_DEBIAN_MIRROR", "http://deb.debian.org/debian")
#: Python for Ansible's modules, python3-apt for its apt module, sudo for become,
#: systemd for systemctl enable, the rest so the image looks like an installed OS.
INCLUDE = ("python3", "python3-apt", "sudo", "systemd", "openssh-server")
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "imagebuilder"
CACHE_MAX_AGE = 7 * 24 * 3600


def chroot_unavailable() -> str | None:
    """Why the chroot test cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (debootstrap, chroot, mount)"
    for tool in ("debootstrap", "mount", "umount", "tar"):
        if not shutil.which(tool):
            return f"{tool} is not installed (apt-get install debootstrap)"
    try:
        import ansible_collections.community.general  # noqa: F401
    except ImportError:
        return "community.general (chroot connection) missing: pip install ansible"
    return None


def _cache_tarball() -> Path:
    key = hashlib.sha256(f"{SUITE} {MIRROR} {' '.join(INCLUDE)}".encode()).hexdigest()[:12]
    return CACHE_DIR / f"debootstrap-{SUITE}-minbase-{key}.tar.gz"


def make_debian_root(root: Path) -> Path:
    """Debian stable in ``root``: unpacked from the cache, else debootstrapped (and cached)."""
    tarball = _cache_tarball()
    root.mkdir(parents=True, exist_ok=True)
    if tarball.is_file() and time.time() - tarball.stat().st_mtime < CACHE_MAX_AGE:
        subprocess.run(["tar", "-xzpf", str(tarball), "-C", str(root)], check=True)
        return root
    subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(INCLUDE)}",
                    SUITE, str(root), MIRROR], check=True, stdout=subprocess.DEVNULL)
    tarball.parent.mkdir(parents=True, exist_ok=True)
    partial = tarball.with_suffix(".partial")
    subprocess.run(["tar", "-I", "gzip -1", "-cpf", str(partial), "-C", str(root), "."],
                   check=True)
    partial.replace(tarball)
    return root


def mount_proc(root: Path) -> None:
    """/proc in the chroot, as a running system has it (package scripts read it)."""
    subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)


def unmount_all(root: Path) -> None:
    """Undo every mount under ``root`` (lazily: nothing may stay behind)."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for point in sorted((m for m in mounts if m.startswith(str(root) + "/")), reverse=True):
        subprocess.run(["umount", "-l", point], check=False)


def as_installed_os(root: Path, user: str = "builder") -> None:
    """What an OS install leaves that sysprep must remove: the build user with its
    sudoers file, host keys, a machine ID, logs, history, a NoCloud leftover."""
    policy = root / "usr/sbin/policy-rc.d"  # never start daemons inside the chroot
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    subprocess.run(["chroot", str(root), "useradd", "-m", "-s", "/bin/bash", "-G", "sudo", user],
                   check=True)
    (root / f"etc/sudoers.d/{user}").write_text(f"{user} ALL=(ALL) NOPASSWD: ALL\n")
    (root / f"etc/sudoers.d/{user}").chmod(0o440)
    (root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    for kind in ("rsa", "ed25519"):
        (root / f"etc/ssh/ssh_host_{kind}_key").write_text("stand-in host key\n")
        (root / f"etc/ssh/ssh_host_{kind}_key.pub").write_text("stand-in host key\n")
    (root / "etc/cloud/cloud.cfg.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/cloud/cloud.cfg.d/99-installer.cfg").write_text(
        "datasource_list: [NoCloud, None]\n")
    (root / "var/log/installer.log").write_text("the installer's log\n")
    (root / "var/log/old.log.1.gz").write_bytes(b"rotated")
    (root / "root/.bash_history").write_text("history\n")
    (root / f"home/{user}/.bash_history").write_text("history\n")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _script(name: str, version: str) -> bytes:
    return f"#!/bin/sh\necho '{name} {version} (imagebuilder stand-in)'\n".encode()


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o755, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return path


#: The image archives a Kubernetes release (or a mirror of it) publishes beside its
#: binaries: upstream's kubernetes_primary_imgs, then kubernetes_additional_imgs.
KUBERNETES_IMAGES = ("kube-apiserver.tar", "kube-controller-manager.tar", "kube-scheduler.tar",
                     "kube-proxy.tar", "pause.tar", "coredns.tar", "etcd.tar")


class _Served:
    """Something served over HTTP on 127.0.0.1 while open (``with``)."""

    _server: http.server.ThreadingHTTPServer | None = None

    def _serve(self, handler: type | functools.partial) -> None:
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def __exit__(self, *exc: object) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server, "not serving"
        return f"http://127.0.0.1:{self._server.server_address[1]}"


class StandInReleases(_Served):
    """Stand-in release artifacts under ``root``, served on 127.0.0.1 while open."""

    def __init__(self, root: Path, containerd: str, runc: str, crictl: str,
                 kubernetes: str, cni: str, arch: str = "amd64") -> None:
        self.root, self.arch = root, arch
        self.versions = {"containerd": containerd, "runc": runc, "crictl": crictl,
                         "kubernetes": kubernetes, "cni": cni}
        c = containerd
        self.containerd = _tar(root / f"containerd/v{c}/containerd-{c}-linux-{arch}.tar.gz", {
            f"bin/{b}": _script(b, f"containerd.io v{c}")
            for b in ("containerd", "containerd-shim-runc-v2", "ctr")})
        self.runc = root / f"runc/v{runc}/runc.{arch}"
        self.runc.parent.mkdir(parents=True)
        self.runc.write_bytes(_script("runc version", runc))
        self.crictl = _tar(root / f"crictl/v{crictl}/crictl-v{crictl}-linux-{arch}.tar.gz",
                           {"crictl": _script("crictl version", f"v{crictl}")})
        bindir = root / f"release/{kubernetes}/bin/linux/{arch}"
        bindir.mkdir(parents=True)
        for name in ("kubeadm", "kubelet", "kubectl"):
            (bindir / name).write_bytes(_script(name, kubernetes))
            (bindir / f"{name}.sha256").write_text(sha256(bindir / name))  # dl.k8s.io style
        for image in KUBERNETES_IMAGES:  # docker-archive layout, named as the release names them
            stem = image.removesuffix(".tar")
            manifest = [{"Config": "config.json", "Layers": [],
                         "RepoTags": [f"registry.k8s.io/{stem}-{arch}:{kubernetes}"]}]
            _tar(bindir / image, {"manifest.json": json.dumps(manifest).encode(),
                                  "config.json": b"{}"})
            (bindir / f"{image}.sha256").write_text(sha256(bindir / image))
        self.cni = _tar(root / f"cni/{cni}/cni-plugins-linux-{arch}-{cni}.tgz", {
            f"./{p}": _script(p, cni) for p in ("bridge", "host-local", "loopback", "portmap")})

    def __enter__(self) -> "StandInReleases":
        self._serve(functools.partial(_QuietHandler, directory=str(self.root)))
        return self

    def packer_vars(self) -> dict[str, str]:
        """Packer variables pointing every release download at this server."""
        u, v = self.url, self.versions
        return {
            "containerd_url": f"{u}/{self.containerd.relative_to(self.root)}",
            "containerd_sha256": sha256(self.containerd),
            "containerd_version": v["containerd"],
            "runc_url": f"{u}/{self.runc.relative_to(self.root)}",
            "runc_sha256": sha256(self.runc),
            "runc_version": v["runc"],
            "crictl_url": f"{u}/{self.crictl.relative_to(self.root)}",
            "crictl_sha256": sha256(self.crictl),
            "crictl_source_type": "http",
            "kubernetes_source_type": "http",
            "kubernetes_http_source": f"{u}/release",
            "kubernetes_semver": v["kubernetes"],
            "kubernetes_cni_source_type": "http",
            "kubernetes_cni_http_source": f"{u}/cni",
            "kubernetes_cni_semver": v["cni"],
            "kubernetes_cni_http_checksum": f"sha256:{sha256(self.cni)}",
        }


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@contextmanager
def serving(directory: Path) -> Iterator[tuple[str, list[str]]]:
    """``directory`` served over HTTP on 127.0.0.1 while open: its base URL, and the
    paths requested so far (in order)."""
    requested: list[str] = []

    class Handler(_QuietHandler):
        def do_GET(self) -> None:  # noqa: N802
            requested.append(self.path)
            super().do_GET()

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requested
    finally:
        server.shutdown()
        server.server_close()


# --- stand-ins for node content (gVisor, wasm shims, an upgradable package, a proxy) ---

def add_gvisor(releases: StandInReleases, version: str = "20260101",
               arch: str = "x86_64") -> dict[str, str]:
    """runsc and containerd-shim-runsc-v1 laid out like gVisor's release bucket, each
    with its ``.sha512`` file; returns the variables that point the build at them."""
    base = releases.root / "gvisor"
    for name in ("runsc", "containerd-shim-runsc-v1"):
        path = base / version / arch / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_script(name, version))
        digest = hashlib.sha512(path.read_bytes()).hexdigest()
        (path.parent / f"{name}.sha512").write_text(f"{digest}  {name}\n")
    return {"containerd_gvisor_runtime": "true", "containerd_gvisor_version": version,
            "containerd_gvisor_url": f"{releases.url}/gvisor"}


def add_wasm_shims(releases: StandInReleases, shims: dict[str, str],
                   version: str = "v0.11.1") -> dict[str, str]:
    """One archive per shim (``{shim: runtime version}``), named as deislabs'
    releases are; returns upstream's containerd_wasm_shims_* variables for them."""
    sums = {}
    for shim, rt in shims.items():
        archive = _tar(releases.root / f"wasm/{version}/containerd-wasm-shims-{rt}-{shim}"
                       f"-linux-x86_64.tar.gz",
                       {f"containerd-shim-{shim}-{rt}": _script(f"{shim} shim", version)})
        sums[shim] = sha256(archive)
    return {"containerd_wasm_shims_runtimes": ",".join(shims),
            "containerd_wasm_shims_version": version,
            "containerd_wasm_shims_url": f"{releases.url}/wasm/{version}/"
                                         "containerd-wasm-shims-<RTVERSION>-<SHIM>-linux-x86_64.tar.gz",
            "containerd_wasm_shims_sha256": json.dumps(sums),
            "containerd_wasm_shims_runtime_versions": json.dumps(shims)}


UPGRADE_PROBE = "imagebuilder-upgrade-probe"


def _build_deb(root: Path, version: str, out_dir: str) -> str:
    """A tiny package built with the chroot's dpkg-deb; its path inside ``root``."""
    src = root / "tmp" / f"probe-{version}"
    (src / "DEBIAN").mkdir(parents=True)
    (src / "DEBIAN/control").write_text(
        f"Package: {UPGRADE_PROBE}\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: imagebuilder tests <tests@example.invalid>\n"
        "Description: stands in for an OS package with a pending update\n")
    (src / "usr/share/doc" / UPGRADE_PROBE).mkdir(parents=True)
    (src / "usr/share/doc" / UPGRADE_PROBE / "version").write_text(version + "\n")
    deb = f"{out_dir}/{UPGRADE_PROBE}_{version}_all.deb"
    (root / deb.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["chroot", str(root), "dpkg-deb", "--build", f"/tmp/probe-{version}", deb],
                   check=True, stdout=subprocess.DEVNULL)
    shutil.rmtree(src)
    return deb


def with_pending_upgrade(root: Path) -> None:
    """Install version 1 of a probe package and offer version 2 in a local apt
    repository, as an OS with a pending update looks to a dist-upgrade."""
    old = _build_deb(root, "1", "/tmp")
    subprocess.run(["chroot", str(root), "dpkg", "-i", old], check=True,
                   stdout=subprocess.DEVNULL)
    (root / old.lstrip("/")).unlink()
    repo = "/opt/imagebuilder-probe-repo"
    new = _build_deb(root, "2", repo)
    data = (root / new.lstrip("/")).read_bytes()
    (root / repo.lstrip("/") / "Packages").write_text(
        f"Package: {UPGRADE_PROBE}\nVersion: 2\nArchitecture: all\n"
        "Maintainer: imagebuilder tests <tests@example.invalid>\n"
        f"Filename: ./{Path(new).name}\nSize: {len(data)}\n"
        f"SHA256: {hashlib.sha256(data).hexdigest()}\n"
        "Description: stands in for an OS package with a pending update\n\n")
    (root / "etc/apt/sources.list.d/imagebuilder-probe.list").write_text(
        f"deb [trusted=yes] file:{repo} ./\n")


def installed_version(root: Path, package: str) -> str:
    out = subprocess.run(["chroot", str(root), "dpkg-query", "-W", "-f", "${Version}", package],
                         capture_output=True, text=True)
    return out.stdout.strip()


class ForwardProxy(_Served):
    """A plain HTTP forward proxy on 127.0.0.1 (GET only, what apt sends through
    http_proxy), recording every URL it forwarded."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def __enter__(self) -> "ForwardProxy":
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                proxy.urls.append(self.path)
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                try:
                    with opener.open(self.path, timeout=60) as upstream:
                        status, headers, body = upstream.status, upstream.headers, upstream.read()
                except urllib.error.HTTPError as err:
                    status, headers, body = err.code, err.headers, err.read()
                except OSError:
                    status, headers, body = 502, {}, b""
                self.send_response(status)
                for name in ("Content-Type", "Last-Modified"):
                    if headers.get(name):
                        self.send_header(name, headers[name])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self._serve(Handler)
        return self


#: The stand-in ctr of ``standin_extras``: records every call where the test can read it
#: (sysprep empties /var/log) and keeps a copy of every archive it is asked to import.
CTR_RECORD_DIR = "var/lib/imagebuilder-standin"
_RECORDING_CTR = f"""#!/bin/sh
mkdir -p /{CTR_RECORD_DIR}
echo "$*" >> /{CTR_RECORD_DIR}/ctr.calls
case " $* " in *" import "*) for last; do :; done; cp "$last" /{CTR_RECORD_DIR}/ ;; esac
echo 'ctr containerd.io (imagebuilder stand-in)'
""".encode()


def standin_extras(releases: StandInReleases) -> dict[str, object]:
    """Stand-ins for the optional roles' downloads, served by ``releases``, and the
    variables that point those roles at them. The containerd archive gets a ctr that
    records its calls (see CTR_RECORD_DIR)."""
    root, u = releases.root, releases.url
    c = releases.versions["containerd"]
    _tar(releases.containerd, {f"bin/{b}": _script(b, f"containerd.io v{c}")
                               for b in ("containerd", "containerd-shim-runc-v2")}
         | {"bin/ctr": _RECORDING_CTR})
    files = {
        "images/pause-standin.tar": b"stand-in image archive\n",
        "images/agent-standin.tar": b"another stand-in image archive\n",
        "tools/node-tool": _script("node-tool", "v0.1.0"),
        "ecr/v1.31.0/linux/amd64/ecr-credential-provider-linux-amd64":
            _script("ecr-credential-provider", "v1.31.0"),
        "nvidia/NVIDIA-Linux-x86_64-standin.run": (
            b"#!/bin/sh\nset -e\nmkdir -p /var/lib/imagebuilder-standin\n"
            b"echo \"$*\" > /var/lib/imagebuilder-standin/nvidia.args\n"
            b"printf '#!/bin/sh\\necho NVIDIA-SMI stand-in\\n' > /usr/bin/nvidia-smi\n"
            b"chmod 755 /usr/bin/nvidia-smi\n"),
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    trivy = _tar(root / "trivy/trivy_0.58.1_Linux-64bit.tar.gz",
                 {"trivy": _script("Version:", "0.58.1"), "README.md": b"readme\n"})
    (root / "trivy/trivy_0.58.1_checksums.txt").write_text(
        f"{'0' * 64}  trivy_0.58.1_Linux-ARM64.tar.gz\n{sha256(trivy)}  {trivy.name}\n")
    falco = _tar(root / "falco/falco-0.39.2-x86_64.tar.gz", {
        "falco-0.39.2-x86_64/usr/bin/falco": _script("falco version", "0.39.2"),
        "falco-0.39.2-x86_64/etc/falco/falco.yaml": b"# stand-in\n"})
    nvidia = root / "nvidia/NVIDIA-Linux-x86_64-standin.run"
    return {
        "load_additional_components": "true",
        "additional_executables": "true",
        "additional_executables_list": f"{u}/tools/node-tool",
        "additional_executables_destination_path": "/opt/extra/bin",
        "additional_registry_images": "true",
        "additional_registry_images_list": "registry.example/one:1.0,registry.example/two:2.0",
        "additional_url_images": "true",
        "additional_url_images_list": f"{u}/images/pause-standin.tar,{u}/images/agent-standin.tar",
        "ecr_credential_provider": "true",
        "ecr_credential_provider_base_url": f"{u}/ecr",
        "ecr_credential_provider_sha256": sha256(
            root / "ecr/v1.31.0/linux/amd64/ecr-credential-provider-linux-amd64"),
        "gpu_vendor": "nvidia",
        "gpu_block_nouveau_loading": "true",
        "gpu_nvidia_installer_url": f"{u}/{nvidia.relative_to(root)}",
        "gpu_nvidia_installer_sha256": sha256(nvidia),
        "gpu_nvidia_build_packages_debian": [],
        "security_install_trivy": "true",
        "security_trivy_url": f"{u}/{trivy.relative_to(root)}",
        "security_trivy_checksum": f"sha256:{u}/trivy/trivy_0.58.1_checksums.txt",
        "security_install_falco": "true",
        "security_falco_url": f"{u}/{falco.relative_to(root)}",
        "security_falco_checksum": f"sha256:{sha256(falco)}",
    }


class LocalS3:
    """An S3-compatible server on 127.0.0.1 (moto in server mode) that checks
    signatures: one IAM user whose keys may read and write one bucket."""

    def __init__(self, bucket: str = "components") -> None:
        self.bucket = bucket
        self._proc: subprocess.Popen | None = None
        self.access_key = self.secret_key = ""

    def __enter__(self) -> "LocalS3":
        import json
        import socket
        import sys
        import urllib.request

        import boto3
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        # After these three unsigned IAM calls every request must be signed by a known key.
        env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
        self._proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                urllib.request.urlopen(self.url + "/moto-api/", timeout=2)
                break
            except OSError:
                time.sleep(0.1)
        iam = boto3.client("iam", endpoint_url=self.url, region_name="us-east-1",
                           aws_access_key_id="setup", aws_secret_access_key="setup")
        iam.create_user(UserName="imagebuilder")
        key = iam.create_access_key(UserName="imagebuilder")["AccessKey"]
        iam.put_user_policy(UserName="imagebuilder", PolicyName="s3", PolicyDocument=json.dumps(
            {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        self.access_key, self.secret_key = key["AccessKeyId"], key["SecretAccessKey"]
        self.client().create_bucket(Bucket=self.bucket)
        return self

    def client(self):
        import boto3
        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key)

    def put(self, key: str, data: bytes) -> None:
        self.client().put_object(Bucket=self.bucket, Key=key, Body=data)

    def __exit__(self, *exc: object) -> None:
        if self._proc:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


PLAYBOOKS = REPO / "packer" / "ansible"
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
USER_VARS = "kubelet_extra_args=--node-labels=imagebuilder.test/chroot=yes"


def node_vars(checkout, tmp_path: Path, overrides: dict[str, str]) -> dict[str, str]:
    """What node.json's ansible provisioner hands the playbook for ubuntu-2404; disk
    packing off unless asked for (a chroot's / is this machine's file system: zero-filling
    it would fill this machine's disk; test_chroot_os_paths packs a loop-mounted one)."""
    user_file = write_json(tmp_path / "user-vars.json",
                           {"enable_disk_packing": "false", **overrides,
                            "ansible_user_vars": USER_VARS})
    plan = plan_for(checkout, "node-ova-local-ubuntu-2404", var_files=[user_file])
    return ansible_vars(plan.merged.resolved(plan.knobs.packer_env({})))


def run_playbook(playbook: Path, root: Path, variables: dict[str, str],
                 tmp_path: Path, roles_path: str = "", args: tuple[str, ...] = ()
                 ) -> subprocess.CompletedProcess:
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(f"node ansible_connection=community.general.chroot "
                         f"ansible_host={root} ansible_python_interpreter=auto_silent\n")
    extra = write_json(tmp_path / "extra-vars.json", variables)
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "0",
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local"),
           "ANSIBLE_REMOTE_TMP": "/tmp/.ansible",
           "ANSIBLE_ROLES_PATH": ":".join(filter(None, [str(PLAYBOOKS / "roles"), roles_path])),
           "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(inventory), "-e", f"@{extra}",
                           *args, str(playbook)], capture_output=True, text=True, env=env,
                          timeout=900)
