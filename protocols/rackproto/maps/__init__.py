"""The packaged register maps (TOML). ``rackproto.maps.load("power_shelf")`` loads one."""

from rackproto.regmap import load

__all__ = ["load"]
