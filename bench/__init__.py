"""``make bench``: SKIN's TorchServe against the in-process limit and a plain Flask baseline."""
