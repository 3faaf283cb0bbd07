"""Running SKIN: the launcher behind `make serve`, the page's starter, TorchServe's supervisor and its key rotation."""
