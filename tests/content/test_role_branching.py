"""How the node roles branch per OS family, so the rule cannot drift: every role
decides on ``ib_os`` (vars/main.yml), whose values are the family names upstream's
task files carry (debian, redhat, photon, flatcar); a family's own task file is
named exactly after its value and included only for it; no other task file is
named after an OS. packer/ansible/README.md maps every role and family file."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator

import jinja2
import pytest
import yaml
from ansible.module_utils.facts.system.distribution import Distribution, DistributionFiles
from helpers.common import REPO

ANSIBLE = REPO / "packer" / "ansible"
ROLES = ANSIBLE / "roles"
README = (ANSIBLE / "README.md").read_text()
INCLUDES = ("ansible.builtin.include_tasks", "ansible.builtin.import_tasks")
#: The catalog's distro_name (ova/*.json) -> the distribution Ansible reports for it.
CATALOG_DISTRIBUTIONS = {"ubuntu": "Ubuntu", "rhel": "RedHat", "rockylinux": "Rocky",
                         "almalinux": "AlmaLinux", "photon": "VMware Photon OS",
                         "flatcar": "Flatcar"}
#: Names of distributions inside a family: a task file named so would claim an OS.
DISTRIBUTION_WORDS = {"ubuntu", "rhel", "rocky", "rockylinux", "almalinux", "alma", "centos",
                      "fedora", "kinvolk", "vmware"}
#: The os-release files of the OSes whose family Ansible takes from their NAME.
OS_RELEASE = {
    "photon": 'NAME="VMware Photon OS"\nVERSION="5.0"\nID=photon\nVERSION_ID=5.0\n',
    "flatcar": 'NAME="Flatcar Container Linux by Kinvolk"\nID=flatcar\nVERSION=4152.2.3\n',
}


def _ib_os(distribution: str, os_family: str) -> str:
    expression = yaml.safe_load((ANSIBLE / "vars" / "main.yml").read_text())["ib_os"]
    return jinja2.Environment().from_string(expression).render(
        ansible_distribution=distribution, ansible_os_family=os_family).strip()


def _os_family(distribution: str) -> str:
    """Ansible's own rule (get_distribution_facts): the family map, else the name."""
    return Distribution.OS_FAMILY.get(distribution) or distribution


def _name_from_os_release(text: str) -> str:
    """The distribution Ansible's os-release fallback (the "NA" parser) reads."""
    parsed, facts = DistributionFiles(module=None).parse_distribution_file_NA(
        "NA", text, "/etc/os-release", {"distribution_version": "NA"})
    assert parsed
    return facts["distribution"]


FAMILY_OF = {name: _ib_os(dist, _os_family(dist)) for name, dist in CATALOG_DISTRIBUTIONS.items()}
FAMILIES = set(FAMILY_OF.values())


def test_ib_os_names_each_family_of_the_catalog():
    """ib_os maps what Ansible reports for every OS of the catalog to one family name."""
    distros = {json.loads(p.read_text()).get("distro_name") for p in (REPO / "ova").glob("*.json")}
    # Windows images run their own playbook (packer/ansible/windows/), which has no ib_os.
    assert distros - {None, "windows"} == set(CATALOG_DISTRIBUTIONS)
    assert FAMILY_OF == {"ubuntu": "debian", "rhel": "redhat", "rockylinux": "redhat",
                         "almalinux": "redhat", "photon": "photon", "flatcar": "flatcar"}
    # The families as Ansible spells them: RHEL, Rocky and AlmaLinux are RedHat...
    assert {_os_family(d) for d in ("RedHat", "Rocky", "AlmaLinux")} == {"RedHat"}
    assert _os_family("Ubuntu") == "Debian"
    # ...Photon is its os-release NAME, Flatcar the name of its own parser (older
    # Ansible reported Flatcar's NAME instead, which must give flatcar as well).
    assert _name_from_os_release(OS_RELEASE["photon"]) == "VMware Photon OS"
    assert {"path": "/etc/os-release", "name": "Flatcar"} in DistributionFiles.OSDIST_LIST
    old_flatcar = _name_from_os_release(OS_RELEASE["flatcar"])
    assert old_flatcar == "Flatcar Container Linux by Kinvolk"
    assert _ib_os(old_flatcar, old_flatcar) == "flatcar"


def _conditions(node: dict) -> list[str]:
    when = node.get("when", [])
    return [when] if isinstance(when, str) else [str(w) for w in when]


def _includes(tasks: list, inherited: tuple[str, ...] = ()) -> Iterator[tuple[str, list[str]]]:
    """Every task file a task list includes, with the conditions it is included under
    (its own and those of the blocks around it)."""
    for task in tasks or []:
        conditions = [*inherited, *_conditions(task)]
        for key in ("block", "rescue", "always"):
            if key in task:
                yield from _includes(task[key], tuple(conditions))
        for module in INCLUDES:
            if module in task:
                target = task[module]
                yield target["file"] if isinstance(target, dict) else target, conditions


def _conjuncts(node: jinja2.nodes.Node) -> Iterator[jinja2.nodes.Node]:
    if isinstance(node, jinja2.nodes.And):
        yield from _conjuncts(node.left)
        yield from _conjuncts(node.right)
    else:
        yield node


def _selected(conditions: list[str]) -> tuple[set[str], bool]:
    """The families the conditions (all of which hold) select with ``ib_os == '...'``,
    and whether one selects several at once (``ib_os in [...]``); an ib_os test
    inside an "or" selects nothing."""
    single, several = set(), False
    env = jinja2.Environment()
    for condition in conditions:
        [output] = env.parse("{{ " + condition + " }}").body
        for part in _conjuncts(output.nodes[0]):
            if (isinstance(part, jinja2.nodes.Compare) and len(part.ops) == 1
                    and isinstance(part.expr, jinja2.nodes.Name) and part.expr.name == "ib_os"):
                op, value = part.ops[0].op, part.ops[0].expr
                if op == "eq" and isinstance(value, jinja2.nodes.Const):
                    single.add(value.value)
                several |= op == "in"
    return single, several


def _task_files() -> Iterator[Path]:
    yield from sorted(ROLES.glob("*/tasks/*.yml"))


def _tasks_from() -> set[tuple[str, str]]:
    """(role, task file) of every include_role/import_role naming tasks_from."""
    found = set()
    for path in [*ANSIBLE.glob("*.yml"), *_task_files()]:
        for match in re.finditer(r"name:\s*(\w+)\s*\n\s*tasks_from:\s*(\w+)", path.read_text()):
            found.add((match.group(1), match.group(2) + ".yml"))
    return found


def test_a_family_task_file_is_named_after_the_family_and_included_only_for_it():
    problems = []
    included: dict[tuple[str, str], list[list[str]]] = {}
    for path in _task_files():
        role = path.parent.parent.name
        for target, conditions in _includes(yaml.safe_load(path.read_text())):
            where = f"{path.relative_to(ANSIBLE)} includes {target}"
            if "{{" in target:
                problems.append(f"{where}: a templated name (name each family's file)")
                continue
            included.setdefault((role, target), []).append(conditions)
            single, several = _selected(conditions)
            if several:
                problems.append(f"{where} for several families: one file per family")
            if len(single) == 1 and target != f"{next(iter(single))}.yml":
                problems.append(f"{where} only for {single}: name it {next(iter(single))}.yml")
    for (role, target), cases in included.items():
        stem = Path(target).stem
        if stem in FAMILIES:
            for conditions in cases:
                if _selected(conditions)[0] != {stem}:
                    problems.append(f"roles/{role}/tasks/{target} included without "
                                    f"ib_os == '{stem}': {conditions}")
    assert not problems, "\n".join(problems)
    assert len(included) > 30  # the scan did find the roles' includes


def test_no_other_task_file_is_named_after_an_os():
    words = FAMILIES | DISTRIBUTION_WORDS
    named = [str(p.relative_to(ANSIBLE)) for p in _task_files()
             if p.stem not in FAMILIES and set(re.split(r"[_\-.]", p.stem.lower())) & words]
    assert named == []


def test_every_task_file_is_reached():
    """No task file lies unused: each is main.yml, included by its role, or named by a
    tasks_from in a playbook or another role."""
    reached = {(r, "main.yml") for r in (p.name for p in ROLES.iterdir())} | _tasks_from()
    for path in _task_files():
        for target, _ in _includes(yaml.safe_load(path.read_text())):
            reached.add((path.parent.parent.name, target))
    unused = [str(p.relative_to(ANSIBLE)) for p in _task_files()
              if (p.parent.parent.name, p.name) not in reached]
    assert unused == []


def test_roles_branch_on_ib_os_only():
    """ansible_os_family is read once, where vars/main.yml derives ib_os from it."""
    readers = [str(p.relative_to(ANSIBLE)) for p in sorted(ROLES.rglob("*"))
               if p.is_file() and p.suffix in (".yml", ".j2")
               and re.search(r"os_family", p.read_text())]
    readers += [p.name for p in ANSIBLE.glob("*.yml") if "os_family" in p.read_text()]
    assert readers == []


@pytest.mark.parametrize("role", sorted(p.name for p in ROLES.iterdir()))
def test_readme_maps_the_role_and_its_family_files(role):
    assert f"`{role}`" in README, f"packer/ansible/README.md does not map the {role} role"
    for path in sorted((ROLES / role / "tasks").glob("*.yml")):
        if path.stem in FAMILIES:
            assert re.search(rf"`{role}`[^\n]*`{path.name}`", README), \
                f"packer/ansible/README.md: the {role} row does not name {path.name}"
