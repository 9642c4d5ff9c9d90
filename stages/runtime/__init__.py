"""What runs a model outside the browser: the compiled components (component, generate,
params), the PyTorch reference they are checked against (components), the sampler math
(samplers), the seeded generator shared with the page (rng), the facts shared with the page
(contract), and the local web server (serve). Stages use it; it never imports a stage.
"""
