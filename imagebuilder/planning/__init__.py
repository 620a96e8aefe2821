"""Planning a build before anything runs: its inputs read in order (inputs), every rule over
them (rules), the checked plan (plan), downloads, base images, goss, install files, and what a
dry run or render shows (inspect).
"""
