"""Operate a running SKIN TorchServe from the command line: ``python -m ops --help``."""
