"""An example third-party diffctl plugin (see docs/plugins.md in the diffctl repository).

It adds a ``spiral`` dataset, an ``euler-maruyama`` sampler, an ``energy-distance`` metric and
a ``diffctl energy-distance`` command. Importing this package imports nothing heavy.
"""

from __future__ import annotations

__version__ = "0.1.0"
