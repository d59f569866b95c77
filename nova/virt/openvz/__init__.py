"""Loading shim for Nova.

Nova loads ``compute_driver = openvz.OpenVZDriver`` by importing
``nova.virt.openvz.OpenVZDriver``.  The driver lives in the ``nova_openvz``
package; this module, installed into Nova's own ``nova/virt`` tree, only
re-exports it.
"""

from nova_openvz.driver import OpenVZDriver

__all__ = ['OpenVZDriver']
