"""Test machinery: fixtures, the all-in-one cloud, host clean-up.

Used by the tests and by ``nova-openvz sandbox`` (which imports it only when
it runs); never by the driver at run time.  :mod:`.allinone` builds on
Nova's own functional harness (``nova.tests``), so it needs the ``sandbox``
extra.
"""
