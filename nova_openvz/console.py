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

"""A container's console: Nova's console log and its serial console.

vzctl keeps no console log; it offers the console only as an interactive
session that can be attached even while the container is stopped
(``vzctl console``, reference 1.8).  So from creation to destroy one agent
per host (:mod:`nova_openvz.privsep.consoleagent`, started by a privileged
entrypoint) holds each container's session, appends what init and the
guest print to ``<instances_path>/<uuid>/console.log`` (rotated at
``[openvz] console_log_max_bytes``) and, for ``get_serial_console``, serves
the console on a TCP port of Nova's ``[serial_console] port_range``.  The
agent survives nova-compute restarts; a console lost with a host reboot is
attached again when the server starts or its console is asked for.
"""

import errno
import os

from nova.console import serial as serial_console
from nova.console import type as console_type
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
#: Ports tried when another process took the one Nova's allocator gave.
SERIAL_PORT_ATTEMPTS = 5

#: instance UUID -> (address, port) its serial console has from Nova's
#: allocator, released on detach.
_serial_ports = {}


def directory(instance):
    return privsep.paths().instance_dir(instance.uuid)


def attach(instance, container):
    """Make sure the agent holds the container's console (idempotent).

    :param container: its :class:`~nova_openvz.container.Container`.
    """
    os.makedirs(directory(instance), exist_ok=True)
    container.attach_console(directory(instance))


def attach_quietly(instance, container):
    """:func:`attach`, where a console problem must not stop a server.

    :returns: whether the agent holds the console now.
    """
    try:
        attach(instance, container)
    except exception.HostToolError as e:
        LOG.warning('No console log for this container: %s',
                    e.format_message(), instance=instance)
        return False
    return True


def _release_port(instance):
    port = _serial_ports.pop(instance.uuid, None)
    if port is not None:
        serial_console.release_port(*port)


def detach(instance):
    """Stop logging and serving the console; the log stays."""
    try:
        if os.path.isdir(directory(instance)):
            priv_console.detach_console(directory(instance))
    finally:
        _release_port(instance)


def remove(instance):
    """Detach the console and delete its log (the directory stays).

    The container goes next, and its console session with it: a failure
    to detach is only logged.
    """
    try:
        detach(instance)
    except Exception:
        LOG.exception('Could not detach the console', instance=instance)
    for name in priv_console.CONSOLE_FILES:
        try:
            os.unlink(os.path.join(directory(instance), name))
        except FileNotFoundError:
            pass


def _serving(instance, host, port):
    """Where the agent serves the console, after asking it to serve."""
    where = priv_console.serve_serial_console(directory(instance), host,
                                              port)
    # privsep returns tuples as lists.
    return tuple(where) if isinstance(where, (list, tuple)) else where


def serial(instance, container):
    """Where nova-serialproxy reaches the container's console (TCP).

    :param container: its :class:`~nova_openvz.container.Container`.

    The agent listens on ``[serial_console] proxyclient_address``, on a
    port from Nova's allocator, from the first request until the console
    is detached; every client sees the console's output and types into it.

    :raises: ConsoleTypeUnavailable when the serial console is disabled,
        ConsoleNotAvailable when the console cannot be attached.
    """
    if not CONF.serial_console.enabled:
        raise nova_exception.ConsoleTypeUnavailable(console_type='serial')
    if not attach_quietly(instance, container):
        raise nova_exception.ConsoleNotAvailable()
    host = CONF.serial_console.proxyclient_address
    where = _serving(instance, host, None)
    attempts = 0
    while where is None or where == errno.EADDRINUSE:
        if attempts == SERIAL_PORT_ATTEMPTS:
            raise nova_exception.ConsoleNotAvailable()
        attempts += 1
        port = serial_console.acquire_port(host)
        where = _serving(instance, host, port)
        if where != (host, port):
            serial_console.release_port(host, port)
        if where is None:    # the container's console went meanwhile
            raise nova_exception.ConsoleNotAvailable()
    if _serial_ports.get(instance.uuid) != where:
        _release_port(instance)
        _serial_ports[instance.uuid] = where
    return console_type.ConsoleSerial(host=where[0], port=where[1])


def output(instance, container):
    """The last :data:`MAX_OUTPUT_BYTES` the console printed, as text.

    Latin-1 maps each byte to one character, so Nova's manager gets the
    bytes back unchanged.
    """
    # Attach again a console lost with a host reboot; until the console
    # prints something, its log is empty rather than missing.
    attached = attach_quietly(instance, container)
    data = priv_console.console_log_tail(directory(instance),
                                         MAX_OUTPUT_BYTES)
    if data is None and not attached:
        raise nova_exception.ConsoleNotAvailable()
    return (data or b'').decode('latin-1')
