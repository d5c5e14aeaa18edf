"""Samplers: reverse-process solvers, each a short function over a precomputed time grid.

Importing this package is light; the solvers live in one module each (``ddim``, ``ancestral``,
``euler``, ``heun``, ``dpmpp_2m``) and share the plumbing in ``base``.
"""
