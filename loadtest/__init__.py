"""Load and soak tests of a SKIN TorchServe with locust, on loopback only: ``python -m loadtest``."""
