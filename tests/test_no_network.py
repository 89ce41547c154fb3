"""The suite-wide ``no_network`` fixture (tests/conftest.py) blocks non-local connections."""

from __future__ import annotations

import socket
import urllib.request

import pytest


def test_connection_to_another_host_is_blocked():
    with pytest.raises(OSError, match="offline: connection to .*8.8.8.8"), socket.socket() as sock:
        sock.connect(("8.8.8.8", 53))


def test_create_connection_and_urllib_are_blocked():
    with pytest.raises(OSError):
        socket.create_connection(("192.0.2.1", 80), timeout=1)
    with pytest.raises(OSError):
        urllib.request.urlopen("http://192.0.2.1/", timeout=1)


def test_localhost_still_connects():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            peer, _ = server.accept()
            client.sendall(b"ok")
            assert peer.recv(2) == b"ok"
            peer.close()
        with socket.create_connection(("localhost", port), timeout=5):
            server.accept()[0].close()
