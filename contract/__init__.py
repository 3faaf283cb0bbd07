"""SKIN's wire contract: what the server and its clients agree on, importable without torch.

Standard library only, so the page, the load test and ops need none of the server's dependencies;
tools/archive.py packs the package beside the handler, which imports it as the clients do.
"""
