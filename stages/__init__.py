"""websd's build: the stages, one module each (spec() + run(): docs/architecture.md), and
beside them the engine (stages/engine/), the compiler (stages/passes/) and the runtime
(stages/runtime/).

Importing this package must stay free: no torch or tvm at module level anywhere under it, so
that a no-op `doit build` loads in well under a second.
"""
