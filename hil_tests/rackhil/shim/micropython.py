"""CPython stand-in for MicroPython's ``micropython`` module.

Lets ``rackfw`` (which imports ``from micropython import const``) run under CPython
for fast tests. This directory is put on ``sys.path`` only in CPython contexts
(``rackhil.shim.install()``, ``CPythonNode``); it is never copied into a VM, where the
real built-in module exists.

``heap_lock`` cannot stop CPython from allocating, so it only counts nesting like the
real one does; allocation-freedom is proved in the VM (``micropython.heap_lock()``
there raises MemoryError on any allocation).
"""

import gc as _gc

_lock_depth = 0


def const(x):
    """Compile-time constant in MicroPython; identity here."""
    return x


def heap_lock():
    """Returns None, like the MicroPython 1.27 WebAssembly build."""
    global _lock_depth
    _lock_depth += 1


def heap_unlock():
    """Returns the new lock depth, like MicroPython (which wraps below 0; this does not)."""
    global _lock_depth
    if _lock_depth:
        _lock_depth -= 1
    return _lock_depth


def heap_locked():
    return _lock_depth


def mem_info(verbose=None):
    """Rough equivalent: number of objects tracked by the CPython GC."""
    print("objects tracked:", len(_gc.get_objects()))  # noqa: T201 - mirrors MicroPython


def qstr_info(verbose=None):
    pass


def stack_use():
    return 0


def alloc_emergency_exception_buf(size):
    pass


def opt_level(level=None):
    return 0 if level is None else None


def kbd_intr(ch):
    pass


def schedule(func, arg):
    func(arg)


def native(f):
    return f


def viper(f):
    return f

