"""free_port: the kernel may offer a port again once the probing socket closes; two services of one
test given the same port would fight over it (a test once gave the API the broker's port)."""

from __future__ import annotations

import socket

import pytest

from yadtq.ops import ports


def test_free_port_never_hands_out_a_port_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    offered = iter([40001, 40001, 40002, 40001, 40002, 40003])

    class Probe:
        def __enter__(self) -> Probe:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def bind(self, addr: tuple[str, int]) -> None:
            self.port = next(offered)

        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(ports, "_handed_out", set())
    monkeypatch.setattr(socket, "socket", Probe)
    assert [ports.free_port() for _ in range(3)] == [40001, 40002, 40003]

