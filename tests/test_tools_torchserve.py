"""serve.torchserve's port choice, and what a TorchServe that could not start tells its caller."""
from __future__ import annotations

import socket

import pytest

from serve.torchserve import EPHEMERAL_RANGE, LOWEST_FREE_PORT, TorchServe, free_port


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range():
    ephemeral_low = int(EPHEMERAL_RANGE.read_text().split()[0])
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(LOWEST_FREE_PORT <= port < max(ephemeral_low, LOWEST_FREE_PORT + 1000) for port in ports)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))


def test_a_port_in_use_is_named_when_torchserve_exits(tmp_path, model_store):
    server = TorchServe.on_free_ports(tmp_path / "ts", model_store=model_store, models="")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", server.ports["metrics"]))
        taken.listen()
        server.start()
        try:
            with pytest.raises(RuntimeError, match="(?s)TorchServe exited.*Address already in use"):
                server.wait_ready(timeout=120)
        finally:
            server.stop()
