"""The simulated OpenVZ host.

Executables with the command-line contract of vzctl, vzlist, ploop and
vzmigrate (front ends, :mod:`vzsim.cli`) over simulated kernel back ends
(:mod:`vzsim.kernel`), working on a host tree laid out by ``nova-openvz
simulate init`` (see doc/source/contributor/design.rst).  Standard library
only, because every tool call is a fresh Python process; the driver
(:mod:`nova_openvz`) never imports this package.
"""
