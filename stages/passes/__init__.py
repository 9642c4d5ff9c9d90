"""Compiler passes, one module per pass; `pipeline.py` holds the only ordered list of them."""
