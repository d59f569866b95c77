"""The simulated OpenVZ host.

Executables with the command-line contract of vzctl, vzlist, ploop and
vzmigrate, working on a host tree created by ``nova-openvz simulate init``
(see doc/source/contributor/design.rst).  Standard library only, plus
:mod:`nova_openvz.vzconf`, because every tool call is a fresh Python process.
"""
