"""The test host's own exceptions (never raised by Envoy: they tell a test what went wrong)."""

from __future__ import annotations

from collections.abc import Sequence


class TestHostError(Exception):
    """Base class: the test drove the host in a way Envoy never would, or the host cannot model it."""

    __test__ = False  # not a pytest test class


class UnsupportedImport(TestHostError):
    """The module imports a function this host does not provide (or with another signature).

    Envoy refuses such a module at load time ("Failed to load Wasm module due to a missing import").
    """


class NotModelled(TestHostError):
    """The guest called something Envoy implements but this host does not model (gRPC, foreign
    functions): the test fails loudly instead of getting an answer Envoy would not give."""


class GuestTrap(TestHostError):
    """The guest trapped (panic, unreachable, out of fuel, proc_exit); the VM is dead, as in Envoy.

    Attributes:
        callback: the export that was running.
        cause: wasmtime's error (or the host's reason).
    """

    def __init__(self, callback: str, args: Sequence[int], cause: BaseException | str, logs: Sequence[str]):
        tail = "\n  ".join(logs[-5:]) or "(no log lines)"
        super().__init__(f"guest trapped in {callback}{tuple(args)}: {cause}\n  last log lines:\n  {tail}")
        self.callback = callback
        self.cause = cause
