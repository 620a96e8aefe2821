"""Running builds: steps with cleanups, Packer, the scheduler, signals, progress, summaries, tool
checks.
"""
