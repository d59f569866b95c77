# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""Undo what a step made, whether the steps after it succeed or fail.

Nested ``with undone_by(...)`` blocks undo in reverse order, as
:mod:`nova_openvz.snapshots` and the ploop image conversion in
:mod:`nova_openvz.images` use them.
"""

import contextlib

from oslo_log import log as logging
from oslo_utils import excutils

LOG = logging.getLogger(__name__)


def _name(undo):
    # Privsep entrypoints and functools.partial objects have no __name__.
    return getattr(undo, '__qualname__', None) or repr(undo)


@contextlib.contextmanager
def undone_by(undo, *args):
    """Run ``undo(*args)`` after the block; its error wins only on success.

    When the block failed, a failing undo is logged and the block's own
    error is what the caller (and the server's fault) sees.
    """
    with undone_on_failure(undo, *args):
        yield
    undo(*args)


@contextlib.contextmanager
def undone_on_failure(undo, *args):
    """Run ``undo(*args)`` only when the block fails; the block's error wins.

    For a change that stays when everything after it succeeds (a resize's
    new limits, a rescue container), as :func:`undone_by` is for temporary
    things.
    """
    try:
        yield
    except BaseException:
        with excutils.save_and_reraise_exception():
            try:
                undo(*args)
            except Exception:
                LOG.exception('Undoing step %s%r failed', _name(undo), args)
