"""Front ends of the simulated host: the tools' command lines.

Each module parses its tool's arguments, checks, prints and exits as the
real tool does, and leaves kernel and image work to the back ends
(:mod:`vzsim.kernel`); nothing outside this package imports it.
"""
