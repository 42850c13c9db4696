"""callbridge: a declarative state-machine engine that bridges telephone calls to AI voice agents.

Import package ``engine``; distribution and command ``callbridge``.
"""

__version__ = "0.1.0"
