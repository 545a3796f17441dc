"""Generators: register map -> firmware tables, Construct structs, Markdown docs.

Each generator takes a :class:`rackproto.regmap.RegisterMap` and returns a
string; only :mod:`rackproto.codegen.write` (``make gen``) writes files.
"""

from rackproto.codegen.constructs import construct_module
from rackproto.codegen.firmware import firmware_module
from rackproto.codegen.markdown import markdown

__all__ = ["construct_module", "firmware_module", "markdown"]
