"""Rendering a build's install files (autoinstall, kickstart, ...) into its work directory.

Templates live in ``packer/install/``; rendered files go under the build's
own work directory (``http/`` for Packer's HTTP server, ``cidata/`` for the
CD), so parallel builds never share or rewrite a file in the source tree.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings
from pathlib import Path

import jinja2
import jinja2.meta

from imagebuilder.config.checkout import Checkout
from imagebuilder.config.knobs import child_env
from imagebuilder.config.upstream import cd_content_sources
from imagebuilder.errors import InputError
from imagebuilder.files import copy_into, private_dir, write_file
from imagebuilder.planning.plan import BuildPlan

#: distro_name -> [(template under packer/install/, destination dir, file name)]
INSTALL_FILES: dict[str, list[tuple[str, str, str]]] = {
    "ubuntu": [("ubuntu/user-data.j2", "cd", "user-data"),
               ("ubuntu/meta-data.j2", "cd", "meta-data")],
    "rhel": [("kickstart/ks.cfg.j2", "http", "ks.cfg")],
    "rockylinux": [("kickstart/ks.cfg.j2", "http", "ks.cfg")],
    "almalinux": [("kickstart/ks.cfg.j2", "http", "ks.cfg")],
    "photon": [("photon/ks.json.j2", "http", "ks.json")],
    "flatcar": [("flatcar/ignition.json.j2", "http", "ignition.json")],
}


def sha512_crypt(password: str) -> str:
    """A SHA-512 crypt hash (``$6$...``) of ``password``, as installers expect.

    Uses the C library's crypt where Python still has it, else
    ``openssl passwd -6`` reading the password on stdin (never argv).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # removed in Python 3.13
        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512))
    except ImportError:
        pass
    openssl = shutil.which("openssl")
    if not openssl:
        raise InputError("cannot hash the build's SSH password: this Python has no crypt "
                         "module and openssl is not installed (apt-get install openssl)")
    out = subprocess.run([openssl, "passwd", "-6", "-stdin"], input=password + "\n",
                         capture_output=True, text=True, check=True, env=child_env())
    return out.stdout.strip()


def install_values(plan: BuildPlan) -> dict[str, str]:
    """Every Packer variable of ``plan``, resolved, plus ``ssh_password_hash``."""
    values = plan.merged.resolved(plan.knobs.packer_env())
    values["ssh_password_hash"] = sha512_crypt(values["ssh_password"])
    return values


def _environment(install_dir: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(install_dir)),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    # A JSON string is also a valid YAML scalar; unlike tojson, no HTML escaping.
    env.filters["json"] = json.dumps
    return env


def template_variables(checkout: Checkout) -> set[str]:
    """The variables the install-file templates (``packer/install/``) read."""
    install_dir = checkout.packer_dir / "install"
    env = _environment(install_dir)
    names: set[str] = set()
    for path in install_dir.rglob("*.j2"):
        names |= jinja2.meta.find_undeclared_variables(env.parse(path.read_text()))
    return names


def render_into(plan: BuildPlan, values: dict[str, str], http_dir: Path,
                cd_dir: Path) -> list[Path]:
    """Render the install files of ``values``' OS into ``http_dir`` / ``cd_dir``."""
    env = _environment(plan.checkout.packer_dir / "install")
    destinations = {"http": http_dir, "cd": cd_dir}
    for directory in destinations.values():
        private_dir(directory)
    written = []
    distro = values.get("distro_name", "")
    for template, dest, name in INSTALL_FILES.get(distro, []):
        try:
            text = env.get_template(template).render(**values)
        except jinja2.UndefinedError as exc:
            raise InputError(f"packer/install/{template}: {exc.message}; "
                             "declare the variable in a var file") from None
        # Also where upstream's per-OS files point (boot_media_path, e.g. "/9/ks.cfg" or
        # "/dev/sr1:/5/ks.json"): under the OS version, so their boot commands work as they are.
        path = destinations[dest] / name
        version = values.get("distro_version", "")
        copies = [path, destinations[dest] / version / name]
        if distro == "photon":  # upstream's Photon files read the kickstart from the CD
            copies.append(destinations["cd"] / version / name)
        for copy in copies:
            if copy.parent != destinations[dest]:
                private_dir(copy.parent)
            write_file(copy, text)
        written.append(path)
    written += _cd_content(values, destinations["cd"], plan.checkout.root)
    if not any(destinations["cd"].iterdir()):
        # cd_files needs at least one file to match; an empty CD is harmless.
        write_file(destinations["cd"] / "README", f"{plan.target.name}: no CD content\n")
    return written


def _cd_content(values: dict[str, str], cd_dir: Path, root: Path) -> list[Path]:
    """Copy what ``cd_content_location`` names onto the CD, beside the rendered install
    files (see upstream.cd_content_sources; the plan has checked that it exists)."""
    sources, problems = cd_content_sources(values.get("cd_content_location", ""), root)
    if problems:
        raise InputError(problems[0])
    copied: list[Path] = []
    for source in sources:
        copied += copy_into(source, cd_dir)
    return copied


def render_install_files(plan: BuildPlan) -> list[Path]:
    """Render the install files of ``plan``'s OS into its work directory.

    Returns the files written. Both destination directories always exist,
    because the template names them for every builder.
    """
    return render_into(plan, install_values(plan), plan.http_dir, plan.cd_dir)
