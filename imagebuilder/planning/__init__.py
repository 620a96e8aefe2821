"""Planning a build before anything runs: the checked plan, downloads, base images, goss, install
files, the inspect output.
"""
