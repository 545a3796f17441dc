"""Firmware identity constants (what the identity registers and FC 2B/0E report)."""

from micropython import const

FW_MAJOR = const(1)
FW_MINOR = const(0)
FW_VERSION = const((FW_MAJOR << 8) | FW_MINOR)
VENDOR = "rackctl"
VENDOR_URL = "https://rackctl.invalid/"
APP_NAME = "rackfw"
