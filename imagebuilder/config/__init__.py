"""Configuration as read: the checkout, the target catalog and names, the environment knobs,
PACKER_FLAGS (packer_flags), var files and their merge (varfiles), the schemas, the template's
variables and references, upstream's forms, the build flags (options).
"""
