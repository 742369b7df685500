"""Warm-transfer service functions.

Importing this package does no network I/O, reads no credentials and loads no
models: every client and model is built lazily by `functions.services.build_services`.
"""
