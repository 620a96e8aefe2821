"""An OVA's shape: member kinds and names, their order, and what references what.

The checks ``verify`` runs on the member list and the descriptor's
References, before any data is read; every importer runs them too.
"""

from __future__ import annotations

from collections import Counter

from imagebuilder.ova.limits import shown_name
from imagebuilder.ova.manifest import Manifest
from imagebuilder.ova.ovf_parse import ParsedOvf
from imagebuilder.ova.tar import Member


def _bare(name: str) -> bool:
    """A file name vSphere can look up: no directory part, nothing a shell or a
    path would read otherwise."""
    return (bool(name) and name not in (".", "..") and not any(c in name for c in "/\\")
            and name.isprintable())


def structure_problems(members: list[Member]) -> list[str]:
    """Member kinds, names and order: only bare-named regular files, the descriptor
    first, one descriptor, no name twice."""
    problems = []
    for i, m in enumerate(members):
        if not m.regular:
            problems.append(f"member {i + 1} ({shown_name(m.name)}) is a {m.kind}, not a "
                            "regular file; an OVA holds only files")
        elif not _bare(m.name):
            problems.append(f"member {i + 1} ({shown_name(m.name)}) is not a bare file name; "
                            "vSphere looks files up by the names the descriptor uses")
    twice = sorted(name for name, count in Counter(m.name for m in members).items() if count > 1)
    if twice:
        problems.append("more than one member named " + ", ".join(map(shown_name, twice[:5])))
    if not members:
        problems.append("the archive is empty")
    elif not members[0].name.endswith(".ovf"):
        problems.append(f"the first member is {shown_name(members[0].name)}, not the OVF "
                        "descriptor; the descriptor must come first")
    ovfs = [m.name for m in members if m.name.endswith(".ovf")]
    if len(ovfs) > 1:
        problems.append(f"more than one OVF descriptor: {', '.join(map(shown_name, ovfs[:5]))}")
    return problems


def manifest_problems(members: list[Member], ovf_name: str) -> tuple[Member | None, list[str]]:
    """The manifest member (None when there is none) and what is wrong with its
    name and place."""
    manifests = [(i, m) for i, m in enumerate(members) if m.name.endswith(".mf")]
    expected = ovf_name[:-len(".ovf")] + ".mf"
    if not manifests:
        return None, [f"no manifest: {expected} is missing, so nothing proves the files are "
                      "intact"]
    problems = []
    if len(manifests) > 1:
        problems.append("more than one manifest: " + ", ".join(
            shown_name(m.name) for _, m in manifests[:5]))
    index, manifest = manifests[0]
    if manifest.name != expected:
        problems.append(f"the manifest is named {shown_name(manifest.name)}; it must be "
                        f"{expected}, after the descriptor")
    after_ovf = index == 1
    at_end = all(m.name.endswith((".mf", ".cert")) for m in members[index:])
    if not (after_ovf or at_end):
        problems.append(f"the manifest {manifest.name} is member {index + 1}; it must come right "
                        "after the descriptor (or at the very end)")
    return manifest, problems


def reference_problems(parsed: ParsedOvf, members: list[Member], ovf_member: Member,
                       manifest_member: Member | None, manifest: Manifest) -> list[str]:
    """The descriptor's References against the members (each there, of the size it
    says, nothing unreferenced) and the manifest against both."""
    problems = []
    by_name = {m.name: m for m in members}
    package = {ovf_member.name} | ({manifest_member.name} if manifest_member else set())
    package |= {m.name for m in members if m.name.endswith(".cert")}
    referenced = set()
    for f in parsed.files:
        referenced.add(f.href)
        member = by_name.get(f.href)
        if member is None:
            problems.append(f"{ovf_member.name} references {shown_name(f.href)} (File "
                            f"{shown_name(f.id)}), which is not in the archive")
        elif f.size is not None and f.size != member.size:
            problems.append(f"{ovf_member.name} gives {f.href} a size of {f.size} bytes; the "
                            f"member has {member.size}")
    for m in members:
        if m.name not in referenced and m.name not in package:
            problems.append(f"member {shown_name(m.name)} is not referenced by "
                            f"{ovf_member.name}")
    if manifest_member is not None:
        for name in [ovf_member.name] + sorted(referenced & set(by_name)):
            if name not in manifest.entries:
                problems.append(f"{manifest_member.name} has no digest for {name}")
        for name in manifest.entries:
            if name not in by_name:
                problems.append(f"{manifest_member.name} lists {shown_name(name)}, which is "
                                "not in the archive")
    return problems
