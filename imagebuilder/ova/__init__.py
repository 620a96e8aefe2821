"""Node image OVAs: descriptor, manifest and archive, built and verified.

    from imagebuilder.ova import assemble_from_packer, verify_ova
    result = assemble_from_packer(Path("output/ubuntu-2204-kube-v1.37.1"))
    verify_ova(result.ova)

Modules: ``vmdk`` (headers), ``stream`` (streamOptimized writer), ``convert``
(to streamOptimized), ``ovf`` (descriptor) and ``ovf_parse`` (reading it back),
``manifest``, ``tar`` (ustar headers, member listing), ``archive`` (the OVA's
layout, single-read writer), ``verify``, ``check`` (ova-verify with --ca and
--provenance), ``inputs`` (Packer manifest, OS catalog), ``assembly_plan``
(options, names, every check), ``assemble`` (the whole job), ``signing``
(the .cert member), ``build_record`` (what a build was made from), ``sbom``
(CycloneDX), ``provenance`` (in-toto/SLSA). The command line is ``cli.ova``.
"""

from __future__ import annotations

from imagebuilder.ova.assemble import (
                       AssembleOptions,
                       AssemblyPlan,
                       AssemblyResult,
                       artifact_names,
                       assemble,
                       assemble_from_packer,
                       plan_from_packer,
                       plan_from_vmdks,
)
from imagebuilder.ova.verify import VerifiedOva, verify_ova

__all__ = ["AssembleOptions", "AssemblyPlan", "AssemblyResult", "VerifiedOva", "artifact_names",
           "assemble", "assemble_from_packer", "plan_from_packer", "plan_from_vmdks",
           "verify_ova"]
