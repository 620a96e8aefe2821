"""Configuration: the checkout, the target catalog, the environment, var files and their layering,
schemas, the template's variables, upstream's forms.
"""
