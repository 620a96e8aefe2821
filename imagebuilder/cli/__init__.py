"""The command line without invoke: ``python -m imagebuilder``."""
