"""Where things live: the checkout's source files and the output tree."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from imagebuilder.errors import InputError

#: Upstream's order for the common var files under packer/config/.
COMMON_VAR_FILES = (
    "kubernetes.json",
    "cni.json",
    "containerd.json",
    "wasm-shims.json",
    "ansible-args.json",
    "goss-args.json",
    "common.json",
    "additional_components.json",
    "ecr_credential_provider.json",
)

#: OS catalog entries in ova/ that are not operating systems.
NON_OS_FILES = ("vsphere.json", "vmx.json")


@dataclass(frozen=True)
class Checkout:
    """A source checkout: templates, var files, OS catalog and the output tree."""

    root: Path

    @property
    def packer_dir(self) -> Path:
        """The Packer tree: the template, its var files, install files, roles."""
        return self.root / "packer"

    @property
    def node_template(self) -> Path:
        """The Packer template every target runs (``packer/node.json``)."""
        return self.packer_dir / "node.json"

    @property
    def packer_common(self) -> Path:
        """``packer/packer-common.json``, layered after PACKER_FLAGS."""
        return self.packer_dir / "packer-common.json"

    @property
    def config_dir(self) -> Path:
        """The common var files' directory (``packer/config/``)."""
        return self.packer_dir / "config"

    @property
    def ova_dir(self) -> Path:
        """The OS catalog (``ova/<os>.json``) and the site files vsphere.json, vmx.json."""
        return self.root / "ova"

    @property
    def output_dir(self) -> Path:
        """Where builds write: ``IB_OUTPUT_DIR``, else ``output/`` of the checkout.

        A relative ``IB_OUTPUT_DIR`` is relative to the directory the user ran the
        command from (Packer runs in the checkout, so it is made absolute here).
        """
        return Path(os.path.abspath(os.environ.get("IB_OUTPUT_DIR") or self.root / "output"))

    @property
    def logs_dir(self) -> Path:
        """One log per target and action, and the run summaries."""
        return self.output_dir / "logs"

    @property
    def work_root(self) -> Path:
        """Per-build working directories (rendered files, secrets, packer cache)."""
        return self.output_dir / ".work"

    def common_var_files(self) -> list[Path]:
        """The common var files of ``packer/config/``, in upstream's order."""
        return [self.config_dir / name for name in COMMON_VAR_FILES]

    def os_file(self, os_name: str) -> Path:
        """The catalog entry of an OS: ``ova/<os>.json``."""
        return self.ova_dir / f"{os_name}.json"

    def os_names(self) -> list[str]:
        """Every OS of the catalog: one ``ova/<os>.json`` each."""
        return sorted(
            p.stem for p in self.ova_dir.glob("*.json") if p.name not in NON_OS_FILES
        )


def _looks_like_checkout(path: Path) -> bool:
    return (path / "packer" / "node.json").is_file() and (path / "ova").is_dir()


def find_checkout(start: Path | None = None) -> Checkout:
    """Locate the checkout: ``IB_ROOT``, else ``start`` (or the working
    directory) and its parents, else the tree this package was installed from."""
    env_root = os.environ.get("IB_ROOT")
    if env_root:
        root = Path(env_root).resolve()
        if not _looks_like_checkout(root):
            raise InputError(f"IB_ROOT={env_root}: no packer/node.json and ova/ there; "
                             "point IB_ROOT at an image-builder checkout")
        return Checkout(root)
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents, Path(__file__).resolve().parent.parent):
        if _looks_like_checkout(candidate):
            return Checkout(candidate)
    raise InputError(f"{here}: not inside an image-builder checkout (no packer/node.json "
                     "and ova/ found here or above); run from the checkout or set IB_ROOT")
