"""Undo what a step made, whether the steps after it succeed or fail.

Nested ``with undone_by(...)`` blocks undo in reverse order, as
:mod:`nova_openvz.snapshots` and the ploop image conversion in
:mod:`nova_openvz.images` use them.
"""

import contextlib

from oslo_log import log as logging
from oslo_utils import excutils

LOG = logging.getLogger(__name__)


@contextlib.contextmanager
def undone_by(undo, *args):
    """Run ``undo(*args)`` after the block; its error wins only on success.

    When the block failed, a failing undo is logged and the block's own
    error is what the caller (and the server's fault) sees.
    """
    try:
        yield
    except BaseException:
        with excutils.save_and_reraise_exception():
            try:
                undo(*args)
            except Exception:
                LOG.exception('Cleanup step %s%r failed', undo.__name__,
                              args)
    else:
        undo(*args)
