"""The invoke side of imagebuilder: the ``image-builder`` program (core ``-j``).

Kept apart from ``imagebuilder`` so that the library never imports invoke.
"""
