"""Functional tests: nova-openvz loaded into Nova's real services.

They run the API, conductor, scheduler, Placement and compute in one process
(Nova's functional harness) against a simulated OpenVZ host, which uses
chroots, mounts and namespaces: run them as root (``tox -e functional``).
"""

# As Nova's own functional tests do (nova/tests/functional/__init__.py):
# apply Nova's concurrency set-up (eventlet monkey patching unless
# OS_NOVA_DISABLE_EVENTLET_PATCHING says otherwise) before anything else
# imports the modules it patches.
from nova import monkey_patch

monkey_patch.patch()
