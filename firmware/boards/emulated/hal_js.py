"""Firmware HAL for the emulated board: thin wrappers over the JS host (`jshal`).

The emulated board runs in the MicroPython WebAssembly VM inside a Node worker
(hil_tests/rackhil/mcu_worker.mjs). Every call crosses into JS with int arguments and
an int result, which does not allocate on the MicroPython heap -- provided the JS
function object is looked up once: an attribute lookup on the ``jshal`` JsProxy makes
a new proxy object (an allocation), so each function is bound to a module global
here at import time. Buffers never cross as objects: Python hands JS the address of
its preallocated bytearray (``uctypes.addressof``) and JS reads or fills the bytes in
wasm memory directly, so a reply or a flash read costs no allocation and no copy.
"""

import json

import jshal
import uctypes

SECTOR = 4096

_addressof = uctypes.addressof
_uart_any = jshal.uart_any
_uart_read = jshal.uart_read
_uart_send = jshal.uart_send
_uart_tx_done = jshal.uart_tx_done
_de_value = jshal.de_value
_ticks_us = jshal.ticks_us
_ticks_ms = jshal.ticks_ms
_sensor_read = jshal.sensor_read
_output_write = jshal.output_write
_output_read = jshal.output_read
_flash_size = jshal.flash_size
_flash_read = jshal.flash_read
_flash_write = jshal.flash_write
_flash_erase = jshal.flash_erase
_wdt_feed = jshal.wdt_feed
_request_reset = jshal.request_reset


def config():
    """Board config from the host (unit_id, baud, board, reset_cause, ...)."""
    return json.loads(jshal.config_json())


class UART:
    def __init__(self, baud=115200):
        self.baud = baud

    def any(self):
        return _uart_any()

    def read_byte(self):
        return _uart_read()

    def send(self, buf, n):
        _uart_send(_addressof(buf), n)

    def tx_done(self):
        return _uart_tx_done() != 0


class Pin:
    """RS-485 driver enable."""

    def value(self, v):
        _de_value(v)


class Clock:
    def ticks_us(self):
        return _ticks_us()

    def ticks_ms(self):
        return _ticks_ms()


class Sensors:
    def read(self, ch):
        return _sensor_read(ch)


class Outputs:
    def write(self, ch, value):
        _output_write(ch, value)

    def read(self, ch):
        return _output_read(ch)


class Flash:
    SECTOR = SECTOR

    def size(self):
        return _flash_size()

    def read(self, offset, buf, n):
        if _flash_read(offset, _addressof(buf), n) < 0:
            raise ValueError("flash read out of range")

    def write(self, offset, buf, n):
        if _flash_write(offset, _addressof(buf), n) < 0:
            raise ValueError("flash write out of range")

    def erase(self, offset, n):
        if _flash_erase(offset, n) < 0:
            raise ValueError("flash erase not sector aligned or out of range")


class WDT:
    def feed(self):
        _wdt_feed()


def reset(cause=4):
    """Ask the host for a reset (default cause: software) once the current poll returns."""
    _request_reset(cause)
