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

"""A container's console log, as Nova's ``get_console_output`` serves it.

vzctl keeps no console log; it offers the console only as an interactive
session that can be attached even while the container is stopped
(``vzctl console``, reference 1.8).  So from creation to destroy each
container has a small logger process holding that session open
(:mod:`nova_openvz.consolelogger`, started by a privileged entrypoint) that
appends what init and the guest print to ``<instances_path>/<uuid>/
console.log``, rotated at ``[openvz] console_log_max_bytes``.  The logger
survives nova-compute restarts; one lost with a host reboot is attached
again when the server starts or its console is read.
"""

import os

from nova import exception as nova_exception
from oslo_log import log as logging
from oslo_utils import units

from nova_openvz import conf as openvz_conf
from nova_openvz import exception
from nova_openvz import privsep
from nova_openvz.privsep import console as priv_console

LOG = logging.getLogger(__name__)
CONF = openvz_conf.CONF

#: What libvirt returns at most: the log's last 100 KiB.
MAX_OUTPUT_BYTES = 100 * units.Ki


def directory(instance):
    return privsep.paths().instance_dir(instance.uuid)


def attach(instance, container):
    """Make sure a logger holds the container's console (idempotent).

    :param container: its :class:`~nova_openvz.container.Container`.
    """
    os.makedirs(directory(instance), exist_ok=True)
    container.attach_console(directory(instance))


def attach_quietly(instance, container):
    """:func:`attach`, where a console problem must not stop a server.

    :returns: whether a logger holds the console now.
    """
    try:
        attach(instance, container)
    except exception.HostToolError as e:
        LOG.warning('No console log for this container: %s',
                    e.format_message(), instance=instance)
        return False
    return True


def detach(instance):
    if os.path.isdir(directory(instance)):
        priv_console.stop_console_logger(directory(instance))


def remove(instance):
    """Detach the console and delete its log (the directory stays)."""
    detach(instance)
    for name in priv_console.CONSOLE_FILES + (priv_console.CONSOLE_PID,):
        try:
            os.unlink(os.path.join(directory(instance), name))
        except FileNotFoundError:
            pass


def output(instance, container):
    """The last :data:`MAX_OUTPUT_BYTES` the console printed, as text.

    Latin-1 maps each byte to one character, so Nova's manager gets the
    bytes back unchanged.
    """
    # Attach again a logger lost with a host reboot; until the console
    # prints something, its log is empty rather than missing.
    attached = attach_quietly(instance, container)
    data = priv_console.console_log_tail(directory(instance),
                                         MAX_OUTPUT_BYTES)
    if data is None and not attached:
        raise nova_exception.ConsoleNotAvailable()
    return (data or b'').decode('latin-1')
