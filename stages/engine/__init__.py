"""The build engine: what turns a table of stages into an incremental, cached build.

config (models and targets from configs/), dag (the table: which stages, each one's Spec),
keys (a stage's key: sources, config slice, tools, inputs), store (cache/: content-addressed
blobs and action entries), remote (the shared HTTP tier of cache/), runner (one stage through
the store), report and progress (what the user sees), manifest (a component's file list),
errors (the one-line BuildError), cache_admin (`doit cache:*`). Nothing here imports torch or
tvm.
"""
