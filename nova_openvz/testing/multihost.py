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

"""Two compute services on two simulated OpenVZ hosts, in one process.

Nova's functional harness starts several nova-compute services in one
process, but they share one ``CONF``, while each OpenVZ host has its own
tools, vz.conf, instance directory and address.  :class:`HostConfig` gives
each service its own values of those options: every call into a service's
driver runs with that host's values (per thread: green threads under
eventlet), and so does the service's start.  Nothing of Nova or of the
driver changes; on real hosts each nova-compute has its own config file.

The simulated ``vzmigrate`` of each host reaches the other one through
``DIR/sim/hosts.json`` (see :mod:`vzsim.cli.vzmigrate`), under the other's
host name and address, as ssh would reach it.
"""

import contextlib
import functools
import json
import os
import sys
import threading
import time
from unittest import mock
import uuid

import fixtures
from nova.virt import driver as virt_driver
from nova.virt import node as virt_node
from oslo_config import cfg

from nova_openvz import conf as openvz_conf
from nova_openvz.testing import allinone
from nova_openvz.testing import fixtures as sim_fixture

CONF = openvz_conf.CONF


class HostConfig(fixtures.Fixture):
    """Per-host option values in one process, for the duration of a call.

    ``values[host]`` maps ``(group, name)`` (group None for ``DEFAULT``) to
    that host's value; :meth:`active` applies one host's values in the
    current thread, :meth:`bind` makes every method of a driver do so.
    """

    def __init__(self, conf=CONF):
        super().__init__()
        self.conf = conf
        self.values = {}

    def _setUp(self):
        self._local = threading.local()
        real_get = self.conf._get

        def _get(name, group=None, namespace=None):
            values = getattr(self._local, 'values', None)
            if values and namespace is None:
                key = (group.name if isinstance(group, cfg.OptGroup)
                       else group, name)
                if key in values:
                    return values[key]
            return real_get(name, group, namespace)

        self.useFixture(fixtures.MockPatchObject(self.conf, '_get', _get))
        self.useFixture(fixtures.MockPatchObject(
            threading.Thread, 'start', self._inheriting_start()))

    def _inheriting_start(self):
        """``Thread.start`` giving the driver's own threads their host.

        A thread the driver starts (named ``openvz-*``, e.g. the lifecycle
        event poller) runs with the values of the host whose call started
        it, as it would in that host's own nova-compute.  Nova's pool
        threads serve every service, so they keep the process's values.
        """
        real_start = threading.Thread.start
        fixture = self

        def start(thread):
            host = fixture.current()
            if host is not None and thread.name.startswith('openvz-'):
                run = thread.run

                def run_as_host():
                    with fixture.active(host):
                        run()
                thread.run = run_as_host
            return real_start(thread)
        return start

    @contextlib.contextmanager
    def active(self, host):
        previous = getattr(self._local, 'host', None)
        self._local.host, self._local.values = host, self.values[host]
        try:
            yield
        finally:
            self._local.host = previous
            self._local.values = self.values.get(previous)

    def current(self):
        """The host whose values apply in this thread, or None."""
        return getattr(self._local, 'host', None)

    def bind(self, driver, host):
        """Run each of ``driver``'s methods with ``host``'s values."""
        for name in dir(type(driver)):
            if name.startswith('__'):
                continue
            method = getattr(driver, name, None)
            if callable(method) and hasattr(method, '__self__'):
                setattr(driver, name, self._wrap(method, host))

    def _wrap(self, method, host):
        @functools.wraps(method)
        def wrapper(*args, **kwargs):
            with self.active(host):
                return method(*args, **kwargs)
        return wrapper


class TwoHostCloudTestCase(allinone.OpenVZCloudTestCase):
    """Nova's cloud with nova-compute on two simulated OpenVZ hosts.

    ``self.vzhosts[name]`` is each host's :class:`SimulatedHostFixture`
    (``self.vzhost`` the first one's), ``self.computes[name]`` its service.
    """

    #: Host names and the address (``my_ip``) of each.
    HOSTS = (('host1', '192.0.2.1'), ('host2', '192.0.2.2'))

    def _setup_compute_service(self):
        self.host_config = self.useFixture(HostConfig())
        self.vzhosts = {}
        for name, address in self.HOSTS:
            vzhost = self.useFixture(sim_fixture.SimulatedHostFixture(
                kernel=allinone.kernel_choice(), configure=False))
            self.vzhosts[name] = vzhost
            values = {('openvz', key): value
                      for key, value in vzhost.options().items()}
            values.update({
                (None, 'host'): name, (None, 'my_ip'): address,
                (None, 'instances_path'):
                    self.useFixture(fixtures.TempDir()).path})
            self.host_config.values[name] = values
        for name, address in self.HOSTS:
            self._write_peers(name)
        # Each host has its own compute node identity (a file in its
        # state_path on a real host; one global in Nova's test fixture).
        node_uuids = {name: str(uuid.uuid4()) for name, _ in self.HOSTS}
        local_node_uuid = virt_node.get_local_node_uuid
        self.useFixture(fixtures.MockPatchObject(
            virt_node, 'get_local_node_uuid',
            lambda: node_uuids.get(self.host_config.current()) or
            local_node_uuid()))
        self.vzhost = self.vzhosts[self.HOSTS[0][0]]
        self.kernel_backend = self.vzhost.backend()
        self.useFixture(sim_fixture.InProcessPrivsep())
        if self.NETWORKING:
            # One switch for both hosts: the integration bridge stands for
            # the tunnel network joining real hosts.
            self._setup_networking()
        self.flags(compute_driver=self.compute_driver)
        self.flags(api_paste_config=os.path.join(
            sys.prefix, 'etc', 'nova', 'api-paste.ini'), group='wsgi')
        self.template_image = self._upload_template()
        first = None
        for name, _address in self.HOSTS:
            compute = self._start_compute(name)
            first = first or compute
        return first

    def _write_peers(self, name):
        """The other hosts, by name and address, for vzmigrate."""
        peers = {}
        for other, address in self.HOSTS:
            if other != name:
                peers[other] = peers[address] = self.vzhosts[other].root
        with open(self.vzhosts[name].sim_path('hosts.json'), 'w') as f:
            json.dump(peers, f)

    @contextlib.contextmanager
    def _as_host(self, host):
        """Start a service as ``host``: its driver bound once it is made.

        The service calls its driver from other threads while it starts
        (Nova's resource update pool), so binding after the start is late.
        """
        load = virt_driver.load_compute_driver

        def load_bound(*args, **kwargs):
            driver = load(*args, **kwargs)
            self.host_config.bind(driver, host)
            return driver

        with self.host_config.active(host), mock.patch.object(
                virt_driver, 'load_compute_driver', load_bound):
            yield

    def _start_compute(self, host, cell_name=None):
        with self._as_host(host):
            return super()._start_compute(host, cell_name=cell_name)

    def restart_compute_service(self, compute, keep_hypervisor_state=False):
        """A new service (and driver) for the same host and its tree."""
        with self._as_host(compute.host):
            new = super().restart_compute_service(
                compute, keep_hypervisor_state=keep_hypervisor_state)
        self.computes[compute.host] = new
        return new

    def _wait_for_migration_status(self, server, expected_statuses):
        statuses = [status.lower() for status in expected_statuses]
        for _attempt in range(self.WAIT_RETRIES):
            for migration in self.api.api_get(
                    '/os-migrations').body['migrations']:
                if migration['instance_uuid'] == server['id'] and \
                        migration['status'].lower() in statuses:
                    return migration
            time.sleep(0.5)
        self.fail('no migration of %s reached %s'
                  % (server['id'], expected_statuses))

    # Helpers for checks on a host -----------------------------------------

    def vzlist_on(self, host):
        code, out, err = self.vzhosts[host].run('vzlist', '-a', '-j')
        self.assertEqual(0, code, err)
        return json.loads(out)

    def container_on(self, host, server):
        """The vzlist record of ``server``'s container on ``host``, or None."""
        for record in self.vzlist_on(host):
            if record.get('name') == server['id']:
                return record
        return None

    def host_of(self, server):
        return self.api.get_server(server['id'])['OS-EXT-SRV-ATTR:host']
