"""callbridge: a declarative state-machine engine that bridges telephone calls to AI voice agents.

Import package ``engine``; distribution and command ``callbridge``.
"""

__version__ = "0.1.0"

from engine import native as _native

_native.guard()  # before any per-frame module is imported: compiled builds only while they match the source
