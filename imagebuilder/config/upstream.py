"""Upstream image-builder's forms, taken as they are.

What a var file written for upstream's OVA targets means here: its quoted
lists, its stock install-file paths and CD content, names upstream declares but
never hands the playbooks, and the variables imagebuilder reads itself.
"""

from __future__ import annotations

from pathlib import Path

from imagebuilder.config.template import playbook_pairs
from imagebuilder.config.varfiles import MergedVars

#: Where a value comes from when no var file sets it.
TEMPLATE_DEFAULTS = "packer/node.json"

#: Upstream's own install-file directories (relative to its images/capi). A
#: var file naming them means "the stock install files": here those are the
#: ones imagebuilder renders into the build's work directory.
UPSTREAM_INSTALL_DIRS = "packer/ova/linux/"

#: Variables imagebuilder itself reads (naming, downloads, install files),
#: besides the ones the template's blocks take.
PLANNER_INPUTS = frozenset({
    "build_version", "base_build_version", "output_dir", "base_output_dir", "image_name",
    "cd_content_location", "http_directory", "output_directory", "vm_name", "export_ovf",
    "containerd_version", "runc_version", "crictl_version", "kubernetes_cni_semver",
    "containerd_url", "runc_url", "crictl_url", "containerd_sha256", "runc_sha256",
    "crictl_sha256", "kubernetes_cni_http_checksum", "kubernetes_goarch",
    "kubernetes_cni_http_source", "kubernetes_http_source", "kubernetes_semver",
    "kubernetes_source_type", "min_vmx_version", "build_name", "source_path", "template",
    "create_snapshot", "ssh_public_key", "ssh_username", "distro_name", "distro_version",
    "destroy",
    # the Content Library step after the OVA (vsphere/library_deploy.py)
    "content_library", "content_library_create", "vsphere_library_name",
})


def unwrap_quoted(file_data: dict[Path, dict], declared: dict[str, str]) -> set[Path]:
    r"""Upstream's documented form for a list the playbooks get in quotes, such as
    ``"extra_rpms": "\"nfs-utils net-tools\""``: the carrier already quotes it, so the
    value's own quotes are dropped (doubled, they would cut the list at its first space).
    Returns the files changed; they reach Packer as rewritten copies."""
    carriers = [str(v) for v in declared.values()]
    carriers += [str(v) for data in file_data.values() for v in data.values()]
    quoted = {name for text in carriers for _, name, in_quotes in playbook_pairs(text)
              if in_quotes}
    changed = set()
    for path, data in file_data.items():
        for key in quoted & set(data):
            value = data[key]
            if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
                data[key] = value[1:-1]
                changed.add(path)
    return changed


def set_pairs(carrier: str, values: dict[str, str]) -> str:
    """``k={{user `x`}}`` pairs of ``carrier`` whose variable is set: for names upstream
    never hands the playbooks, empty means "the role's default", as it does upstream."""
    return " ".join(pair for pair, name, _ in playbook_pairs(carrier)
                    if values.get(name, "").strip())


def cd_content_sources(value: str, root: Path) -> tuple[list[Path], list[str]]:
    """The files and directories ``cd_content_location`` names (globs, several separated
    by commas, as Packer's cd_files; relative to the checkout), and the problems. Upstream's
    own install-file directories stand for the files this build renders: skipped."""
    sources: list[Path] = []
    problems: list[str] = []
    for pattern in filter(None, (p.strip() for p in value.split(","))):
        if UPSTREAM_INSTALL_DIRS in pattern:
            continue
        base = Path(pattern) if Path(pattern).is_absolute() else root / pattern
        if any(c in base.name for c in "*?["):
            matches = sorted(base.parent.glob(base.name))
        else:
            matches = [base] if base.exists() else []
        if not matches:
            problems.append(f"cd_content_location: {pattern}: matches no file; name files "
                            "to put on the CD, or remove the field")
        sources += matches
    return sources, problems


def stock_install_dirs(resolved: dict[str, str], merged: MergedVars,
                        work_dir: Path) -> list[str]:
    """``-var`` flags that put back this build's rendered install files where a var
    file names upstream's stock ones, or none at all (upstream's Flatcar file sets ""
    because its boot command fetches from GitHub; serving ours costs nothing). A -var
    wins over every var file."""
    value = resolved.get("http_directory", "")
    set_by_file = merged.origin.get("http_directory") not in ("generated", TEMPLATE_DEFAULTS)
    if set_by_file and (UPSTREAM_INSTALL_DIRS in value or not value.strip()):
        return [f"-var=http_directory={work_dir / 'http'}"]
    return []
