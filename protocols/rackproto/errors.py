"""The exception hierarchy every rackctl library raises.

Each class also subclasses the matching builtin, so callers that only know
Python (``except ValueError``, ``except TimeoutError``) still catch them.
"""

from __future__ import annotations


class RackError(Exception):
    """Base of every error raised by rackproto, rackctl and rackhil."""


class FrameError(RackError, ValueError):
    """Bytes that are not a valid Modbus RTU frame (length, function code, layout)."""


class CrcError(FrameError):
    """A frame whose CRC-16/MODBUS does not match its contents."""

    def __init__(self, message: str, *, expected: int | None = None, got: int | None = None):
        super().__init__(message)
        self.expected = expected
        self.got = got


class ModbusException(RackError):
    """A Modbus exception response (function code | 0x80) from a device."""

    NAMES = {
        1: "illegal function",
        2: "illegal data address",
        3: "illegal data value",
        4: "server device failure",
        5: "acknowledge",
        6: "server device busy",
        8: "memory parity error",
        10: "gateway path unavailable",
        11: "gateway target failed to respond",
    }

    def __init__(self, code: int, function: int | None = None, message: str | None = None):
        self.code = code
        self.function = function
        name = self.NAMES.get(code, "unknown exception")
        text = message or f"Modbus exception {code:02X} ({name})"
        if function is not None and message is None:
            text += f" for function 0x{function:02X}"
        super().__init__(text)


class DeviceTimeout(RackError, TimeoutError):
    """A device did not answer within the response timeout."""


class MapError(RackError, ValueError):
    """A register map (TOML) is invalid; the message names the file and register."""


class ConfigError(RackError, ValueError):
    """A rackctl configuration file is invalid; the message names the key."""


class RangeError(RackError, ValueError):
    """A value is outside the writable range of a register."""


class QuantityError(FrameError):
    """A quantity or byte count outside the Modbus limits (a server answers exception 03)."""
