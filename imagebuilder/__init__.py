"""Kubernetes node images for VMware vSphere, built with Packer.

The library behind the ``invoke build-node-ova-*`` tasks. It never imports
invoke: developer scripts can use it directly or through
``python -m imagebuilder``.
"""

__version__ = "0.1.0"
