"""websd build stages: each module is one stage, a function from input files to output files.

Importing this package must stay free: no torch or tvm at module level anywhere under it, so
that a no-op `doit build` loads in well under a second.
"""
