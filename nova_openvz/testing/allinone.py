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

"""An all-in-one Nova cloud in one process, on a simulated OpenVZ host.

Nova's own functional harness (shipped in the ``nova`` wheel) runs the real
API, conductor, scheduler, placement and compute manager over SQLite; this
module plugs the OpenVZ driver into it with a fresh simulated host and an
OS template image in Glance.  The functional tests and ``nova-openvz
sandbox`` both build on :class:`OpenVZCloudTestCase`.

The simulated host runs the ``real`` kernel backend (containers are real
processes in namespaces and cgroups, their ploop images loop-mounted ext4)
when this machine allows it -- root and the kernel features
:func:`vzsim.kernel.real.probe` checks -- and the
``modelled`` one otherwise (``simulate init --kernel auto``).  On the real
backend the template image is the busybox guest, whose init and shell
really run; on the modelled one it is the minimal template.

Set ``NOVA_OPENVZ_SIM_KERNEL`` to ``modelled``, ``real`` or ``auto`` (the
default) to choose the backend, e.g. ``NOVA_OPENVZ_SIM_KERNEL=modelled``
to run the functional tests on the modelled kernel on a machine that could
run real containers.  ``real`` fails where the machine cannot.
"""

import atexit
import contextlib
import copy
import fcntl
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import fixtures
from nova import context as nova_context
from nova.tests.functional import integrated_helpers
import os_vif
from oslo_config import cfg
from oslo_log import log as logging

from nova_openvz.testing import fixtures as sim_fixture
from vzsim import switch
from vzsim import templates

LOG = logging.getLogger(__name__)

TEMPLATE_IMAGE_ID = 'a5983393-bd48-46e7-8023-3b49cb4d6789'

#: Environment variable naming the simulated kernel backend (see above).
KERNEL_ENV = 'NOVA_OPENVZ_SIM_KERNEL'

_BUSYBOX_TEMPLATE = []


def kernel_choice():
    """The backend asked for by :data:`KERNEL_ENV`, ``auto`` by default."""
    return os.environ.get(KERNEL_ENV) or 'auto'


def busybox_template():
    """The busybox template tarball, built once per process."""
    if not _BUSYBOX_TEMPLATE:
        _BUSYBOX_TEMPLATE.append(templates.busybox_template_bytes())
    return _BUSYBOX_TEMPLATE[0]


class KeepsImageData(object):
    """Glance keeps what a snapshot uploads, so the image boots again.

    Nova's Glance fixture drops uploaded data; a mixin for test cases.
    """

    def setUp(self):
        super().setUp()
        glance = self.glance
        original_update = glance.update

        def update(context, image_id, metadata, data=None,
                   purge_props=False):
            if data is not None:
                glance._imagedata[image_id] = data.read()
            return original_update(context, image_id, metadata,
                                   purge_props=purge_props)
        self.stub_out('nova.tests.fixtures.GlanceFixture.update',
                      lambda _self, *a, **kw: update(*a, **kw))


class OpenVZCloudTestCase(integrated_helpers._IntegratedTestBase):
    """Nova's integrated test base with the OpenVZ driver as compute.

    With ``NETWORKING = True`` the cloud also has a private Open vSwitch
    (userspace datapath) as the integration bridge, ports made with
    :meth:`make_port` on Nova's Neutron fixture, and a :class:`PortAgent`
    that does what Neutron's Open vSwitch agent and server do for Nova:
    mark a port ACTIVE and send ``network-vif-plugged`` once its device is
    on the switch.  Those tests need the real kernel backend.
    """

    ADMIN_API = True
    NETWORKING = False
    microversion = 'latest'
    compute_driver = 'openvz.OpenVZDriver'

    def _setup_compute_service(self):
        # Runs inside Nova's setUp, after its config fixture, before the
        # compute service starts: the driver must find its host then.
        self.vzhost = self.useFixture(
            sim_fixture.SimulatedHostFixture(kernel=kernel_choice()))
        self.kernel_backend = self.vzhost.backend()
        self.useFixture(sim_fixture.InProcessPrivsep())
        if self.NETWORKING:
            self._setup_networking()
        self.flags(compute_driver=self.compute_driver)
        # One host: a resize stays on it, and is live (resize.py).
        self.flags(allow_resize_to_same_host=True)
        self.flags(instances_path=self.useFixture(fixtures.TempDir()).path)
        # Nova's wheel installs its paste pipeline under the environment's
        # prefix, not next to the package the harness looks beside.
        self.flags(api_paste_config=os.path.join(
            sys.prefix, 'etc', 'nova', 'api-paste.ini'), group='wsgi')
        self.template_image = self._upload_template()
        return self._start_compute('compute')

    def _setup_networking(self):
        why = switch.available()
        if self.kernel_backend != 'real':
            why = 'the simulated host runs the modelled kernel'
        if why:
            self.skipTest('no real networking here: %s' % why)
        self.switch = shared_switch()
        # A bridge of its own, so tests running side by side never share.
        self.integration_bridge = 'bi%s' % uuid.uuid4().hex[:8]
        self.switch.add_bridge(self.integration_bridge)
        self.addCleanup(self.switch.vsctl, '--if-exists', 'del-br',
                        self.integration_bridge)
        self.flags(ovs_bridge=self.integration_bridge, group='neutron')
        # Nova's Neutron fixture turns the event wait off; Neutron's stand-in
        # here sends the events, so the wait is real.
        self.flags(vif_plugging_timeout=60, vif_plugging_is_fatal=True)
        self._ip_index = 10
        self.neutron._subnets = {
            sid: dict(copy.deepcopy(subnet),
                      dns_nameservers=self.NAMESERVERS[subnet['ip_version']])
            for sid, subnet in self.neutron._subnets.items()}
        self.agent = self.useFixture(PortAgent(self))
        # The fixture's first new port has a fixed ID (its port_2); take it
        # here so every port of a test, and its device, is unique.
        self.neutron.create_port()

    #: DNS servers of the test subnets, by IP version.
    NAMESERVERS = {4: ['192.168.1.53'], 6: ['fd37:44e8:ad06::53']}

    def make_port(self, hybrid=False, active=False):
        """A port on Nova's fixture network, with addresses of its own."""
        neutron = self.neutron
        port = neutron.create_port(
            {'port': {'network_id': neutron.network_1['id']}})['port']
        self._ip_index += 1
        self.addCleanup(_remove_host_devices, port['id'])
        stored = neutron._ports[port['id']]
        stored.update({
            'fixed_ips': [
                {'subnet_id': neutron.subnet_1['id'],
                 'ip_address': '192.168.1.%d' % self._ip_index},
                {'subnet_id': neutron.subnet_ipv6_1['id'],
                 'ip_address': 'fd37:44e8:ad06::%x' % self._ip_index}],
            'status': 'ACTIVE' if active else 'DOWN',
            'binding:vif_details': {'datapath_type': 'netdev',
                                    'port_filter': hybrid,
                                    'ovs_hybrid_plug': hybrid}})
        return copy.deepcopy(stored)

    def boot_on_ports(self, name, ports, expected_state='ACTIVE', **extra):
        """Boot on pre-made ports (as Trove does); ``extra`` joins the body.

        Waits up to a minute: the boot waits for the agent's events.
        """
        body = self._build_server(
            name=name, image_uuid=TEMPLATE_IMAGE_ID, flavor_id='1',
            networks=[{'port': p['id']} for p in ports])
        body.update(extra)
        server = self.api.post_server({'server': body})
        return self._wait_for_state_change(server, expected_state,
                                           max_retries=120)

    def _upload_template(self):
        ctxt = nova_context.get_admin_context()
        if self.kernel_backend == 'real':
            name, data = 'nova-openvz-busybox', busybox_template()
        else:
            name = 'nova-openvz-minimal'
            data = templates.minimal_template_bytes()
        return self.glance.create(ctxt, {
            'id': TEMPLATE_IMAGE_ID,
            'name': name,
            'status': 'active',
            'disk_format': 'raw',
            'container_format': 'bare',
            'visibility': 'public',
            'size': len(data),
            'properties': {'os_distro': 'debian', 'os_version': '12'},
        }, data=io.BytesIO(data))

    # Helpers for checks on the host -----------------------------------

    # Waits: real containers on a shared test machine (two test workers,
    # perhaps a cloud beside them) take longer than Nova's five seconds to
    # boot, snapshot, move or stop.

    #: Polls (half a second each) before a wait gives up.
    WAIT_RETRIES = 240

    def _wait_for_server_parameter(self, server, expected_params,
                                   max_retries=10, **kwargs):
        return super()._wait_for_server_parameter(
            server, expected_params,
            max_retries=max(max_retries, self.WAIT_RETRIES), **kwargs)

    def boot(self, name='ct', flavor_id='1', expected_state='ACTIVE'):
        return self._create_server(
            name=name, image_uuid=TEMPLATE_IMAGE_ID, flavor_id=flavor_id,
            networks='none', expected_state=expected_state)

    def require_real_kernel(self):
        """Skip unless the simulated host runs real containers."""
        if self.kernel_backend != 'real':
            self.skipTest('needs the real kernel backend (root and the '
                          'kernel features realkernel.probe checks); this '
                          'host runs the %s one' % self.kernel_backend)

    def vzlist(self):
        """Every container on the host as the real vzlist reports it."""
        code, out, err = self.vzhost.run('vzlist', '-a', '-j')
        self.assertEqual(0, code, err)
        return json.loads(out)

    def container(self, server):
        """The vzlist record of a server's container, or None."""
        for record in self.vzlist():
            if record.get('name') == server['id']:
                return record
        return None


def _remove_host_devices(port_id):
    """What os-vif made on the host for a port a test left plugged.

    Nova's harness stops without deleting servers; the containers go with
    the simulated host, the hybrid bridge and veth pair would stay.
    """
    for prefix in ('qvb', 'qbr', 'tap'):
        name = (prefix + port_id)[:14]
        if os.path.exists('/sys/class/net/' + name):
            subprocess.run(['ip', 'link', 'del', name], check=False,
                           capture_output=True)


_SWITCH = []
#: The temporary directory of the process, before Nova's test fixtures
#: point tempfile at one per test: the switch outlives a test.
_TOP_TMP = tempfile.gettempdir()
#: Where the machine's one test switch lives, and who uses it (a file per
#: process, named by its pid).
_SWITCH_DIR = os.path.join(_TOP_TMP, 'nova-openvz-test-switch')
_SWITCH_USERS = _SWITCH_DIR + '.users'


@contextlib.contextmanager
def _switch_lock():
    """Serialise the test processes' start and stop of the switch."""
    with open(_SWITCH_DIR + '.lock', 'a') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _switch_users():
    """The pids of live processes using the switch; the dead are forgotten."""
    os.makedirs(_SWITCH_USERS, exist_ok=True)
    live = []
    for name in os.listdir(_SWITCH_USERS):
        try:
            os.kill(int(name), 0)
            live.append(int(name))
        except (ValueError, ProcessLookupError):
            os.unlink(os.path.join(_SWITCH_USERS, name))
    return live


def _leave_switch(shared):
    """Stop the switch when the last process using it goes."""
    with _switch_lock():
        try:
            os.unlink(os.path.join(_SWITCH_USERS, str(os.getpid())))
        except FileNotFoundError:
            pass
        if not _switch_users():
            shared.stop()
            shutil.rmtree(_SWITCH_DIR, ignore_errors=True)
            shutil.rmtree(_SWITCH_USERS, ignore_errors=True)


def shared_switch():
    """The machine's private Open vSwitch for tests, started on first use.

    One for every test process on the machine: Open vSwitch's userspace
    datapath takes a kernel device named ``ovs-netdev``, so a second
    switch in the network namespace gets none and all its bridges fail
    (stestr's workers used to start one each).  The first process starts
    it, the last one to exit stops it.  os-vif keeps one OVSDB connection
    per process (its plugins read ``[os_vif_ovs] ovsdb_connection`` when
    loaded); each test uses a bridge of its own on the switch.
    """
    if not _SWITCH:
        shared = switch.Switch(_SWITCH_DIR)
        with _switch_lock():
            if not _switch_users() or not shared.running():
                # Nobody uses it: what is there was left by a killed run.
                shared.stop()
                shutil.rmtree(_SWITCH_DIR, ignore_errors=True)
                shared.start()
            open(os.path.join(_SWITCH_USERS, str(os.getpid())), 'w').close()
        atexit.register(_leave_switch, shared)
        os_vif.initialize()   # registers the [os_vif_ovs] options
        cfg.CONF.set_override('ovsdb_connection', shared.connection,
                              group='os_vif_ovs')
        os_vif.initialize(reset=True)
        cfg.CONF.clear_override('ovsdb_connection', group='os_vif_ovs')
        _SWITCH.append(shared)
    return _SWITCH[0]


class PortAgent(fixtures.Fixture):
    """Neutron's Open vSwitch agent and server, as far as Nova sees them.

    Every 0.1 s it looks at the bound ports: once a DOWN port's device is
    on the integration bridge with Neutron's IDs (native) or in its ``qbr``
    bridge (hybrid), it marks the port ACTIVE and tells Nova
    ``network-vif-plugged`` through the API, as Neutron's Nova notifier
    does; an ACTIVE port whose device left the switch (or came back as a
    new port) goes DOWN, to be reported plugged again.  ``hold`` keeps it
    quiet, to test a timeout.
    """

    def __init__(self, test):
        super().__init__()
        self.test = test
        self.hold = False
        self.sent = []
        self._plugged = {}   # port ID -> what plugged() said when ACTIVE

    def _setUp(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self.addCleanup(self._join)

    def _join(self):
        self._stop.set()
        self._thread.join(10)

    def _run(self):
        while not self._stop.is_set():
            if not self.hold:
                try:
                    self._scan()
                except Exception:   # keep going; the test will time out
                    LOG.exception('Port agent scan failed')
            time.sleep(0.1)

    def plugged(self, port):
        """The port's device as the switch has it now, or None.

        Native: the Interface row (its UUID changes when os-vif deletes
        and adds the port again); hybrid: the ``qbr`` bridge it is in.
        """
        device = ('tap' + port['id'])[:14]
        if port['binding:vif_details'].get('ovs_hybrid_plug'):
            master = '/sys/class/net/%s/master' % device
            if os.path.exists(master):
                bridge = os.path.basename(os.path.realpath(master))
                if bridge.startswith('qbr'):
                    return bridge
            return None
        try:
            ofport = self.test.switch.interface(device, 'ofport')
            ids = self.test.switch.interface(device, 'external_ids')
            row = self.test.switch.interface(device, '_uuid')
        except RuntimeError:
            return None
        if ofport in ('', '[]', '-1') or port['id'] not in ids:
            return None
        return row

    def _scan(self):
        for port in list(self.test.neutron._ports.values()):
            if not port.get('device_id'):
                continue
            plugged = self.plugged(port)
            if port.get('status') == 'ACTIVE' and \
                    plugged != self._plugged.get(port['id']):
                # Gone from the switch, or plugged again: Neutron sees the
                # port go down (and up again on the next scan).
                port['status'] = 'DOWN'
                self._plugged.pop(port['id'], None)
                continue
            if port.get('status') != 'DOWN' or plugged is None:
                continue
            port['status'] = 'ACTIVE'
            self._plugged[port['id']] = plugged
            self.sent.append(port['id'])
            self.test.api.api_post('/os-server-external-events', {
                'events': [{'name': 'network-vif-plugged',
                            'server_uuid': port['device_id'],
                            'tag': port['id'], 'status': 'completed'}]})
