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

"""Pause: a container's processes frozen, memory kept, Nova told PAUSED.

``vzctl chkpnt --suspend`` freezes every process of the container and
``chkpnt --resume`` thaws them (reference 1.9; libvirt's openvz driver
pauses the same way).  vzlist still lists a frozen container as
``running`` and no field of vzctl 4 says it is frozen, so the driver keeps
its own record where vzlist shows it: the word
:data:`nova_openvz.inventory.PAUSED_WORD` in the container's DESCRIPTION.
The one listing of every container (:mod:`nova_openvz.inventory`) reads it
with everything else, so a paused server stays PAUSED across nova-compute
restarts and Nova's power-state sync finds nothing to "fix".

Order matters so that the record never claims less than the truth: the
word is written before the freeze and removed after the thaw.
"""

from nova_openvz import inventory
from nova_openvz import rollback
from nova_openvz import settings


def _describe(container, description, paused):
    container.configure(settings.Description(
        inventory.mark_paused(description, paused)))


def pause(container, description):
    """Mark the container paused, then freeze it.

    :param description: its DESCRIPTION as the listing saw it.
    """
    _describe(container, description, True)
    with rollback.undone_on_failure(_describe, container, description,
                                    False):
        container.freeze()


def unpause(container, description):
    """Thaw the container, then drop the mark.

    If the mark cannot be dropped the container is frozen again: paused,
    as the mark and Nova say, so the next unpause finds what it expects
    (a thaw of a running container fails).
    """
    container.thaw()
    with rollback.undone_on_failure(container.freeze):
        _describe(container, description, False)


def forget(container, description):
    """Drop a mark left on a container that stopped while paused."""
    if inventory.PAUSED_WORD in description.split():
        _describe(container, description, False)
