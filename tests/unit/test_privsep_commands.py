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

"""The table of host commands: the renderer sends it, the helper allows it.

Every argv the renderer (:mod:`nova_openvz.vz4`) can build is accepted by
the privileged helper, and the table holds nothing the renderer does not
build: no command, no option.  (Every other test runs the privileged side
in process, so each argv the driver sends in the whole test suite passes
the same check or fails its test.)
"""

import ast
import os
import sys
import uuid

import fixtures
import nova.conf  # noqa: F401  ([api] dhcp_domain, [DEFAULT] host)
import os_vif
from oslo_config import fixture as config_fixture
import testtools

from nova_openvz import conf as openvz_conf
from nova_openvz import inventory
from nova_openvz import network
from nova_openvz import privsep
from nova_openvz.privsep import commands
from nova_openvz.privsep import containers as priv_containers
from nova_openvz.privsep import images as priv_images
from nova_openvz.privsep import tools as priv_tools
from nova_openvz import settings
from nova_openvz.testing import fixtures as sim_fixture
from nova_openvz import vz4
from tests.unit import test_network

CONF = openvz_conf.CONF
REJECTED = privsep.ArgumentRejected
CTID = 101
GUID = str(uuid.uuid4())
IMAGE = str(uuid.uuid4())


def every_argv():
    """``(tool, argv)`` of every verb of the renderer, every setting used."""
    nics = network.nics([test_network.make_vif(),
                         test_network.make_vif(mac='fa:16:3e:00:00:02',
                                               hybrid=False)])
    identity = settings.Identity(
        str(uuid.uuid4()), inventory.describe(str(uuid.uuid4()), 'vm 1'),
        'web-1.example.org')
    limits = settings.Limits(
        ram_mb=512, swap_mb=0, cpus=2, cpuunits=2000, cpulimit=150,
        ioprio=4, iolimit_mbps=10, iopslimit=300, numproc=400, numfile=9000)
    work = priv_images.ploop_work_dir(IMAGE)
    mount_dir = priv_images.ploop_mount_dir(IMAGE)
    vzctl = [
        vz4.version(),
        vz4.create(CTID, 'debian-12-x86_64-nova-%s' % IMAGE,
                   settings.Disk('ploop', 10), identity),
        vz4.create(CTID, 'nova-%s' % IMAGE, settings.Disk('simfs', 1),
                   settings.Identity(identity.instance_uuid,
                                     identity.description)),
        vz4.configure(CTID, [
            settings.Power(120, onboot=False), limits,
            settings.DeviceAccess(259, 0), settings.Ports(
                tuple(nics), False, ('192.0.2.53', '2001:db8::53'),
                'example.org')]),
        vz4.configure(CTID, [settings.Ports(tuple(nics), True)]),
        vz4.configure(CTID, [settings.Power(30), settings.Limits(
            512, 0, 1, 1000, iolimit_bps=1048576)]),
        vz4.configure(CTID, [settings.AddedPort(nics[0])]),
        vz4.configure(CTID, [settings.RemovedPort('eth1')]),
        vz4.configure(CTID, [settings.DeviceAccess(259, 0, granted=False)]),
        vz4.configure(CTID, [settings.Description(
            'nova-instance=%s nova-paused=yes' % IMAGE)]),
        vz4.configure(CTID, [settings.DiskSize(30)]),
        vz4.start(CTID), vz4.stop(CTID, False), vz4.stop(CTID, True),
        vz4.restart(CTID, False), vz4.restart(CTID, True),
        vz4.destroy(CTID), vz4.umount(CTID), vz4.mount(CTID),
        vz4.run_script(CTID),
        vz4.freeze(CTID), vz4.thaw(CTID),
        vz4.checkpoint(CTID), vz4.restore(CTID),
        vz4.snapshot(CTID, GUID), vz4.delete_snapshot(CTID, GUID),
        vz4.mount_snapshot(CTID, GUID,
                           priv_images.snapshot_mount_dir(CTID, GUID)),
        vz4.umount_snapshot(CTID, GUID),
    ]
    return ([('vzctl', argv) for argv in vzctl] +
            [('vzlist', vz4.list_all()),
             ('vzlist', vz4.list_some([101, 102])),
             ('vzlist', vz4.disk_usage(CTID)),
             ('vzlist', vz4.list_counters(101))] +
            [('ploop', vz4.restore_descriptor(work, work + '/root.hdd')),
             ('ploop', vz4.mount_image(mount_dir,
                                       work + '/DiskDescriptor.xml')),
             ('ploop', vz4.umount_image(mount_dir))] +
            [('vzmigrate', vz4.migrate(CTID, 'node2.example.org',
                                       check_only=True)),
             ('vzmigrate', vz4.migrate(CTID, '192.0.2.2', online=True,
                                       check_only=True)),
             ('vzmigrate', vz4.migrate(CTID, 'node2', keep_source=True)),
             ('vzmigrate', vz4.migrate(CTID, 'node2', online=True))])


class TestTable(testtools.TestCase):

    def setUp(self):
        super().setUp()
        # Ports become os-vif objects (the bridge): registered here, not
        # by whichever test happened to run before in this worker.
        os_vif.objects.register_all()
        self.useFixture(sim_fixture.SimulatedHostFixture())
        self.useFixture(sim_fixture.InProcessPrivsep())
        self.flags = self.useFixture(config_fixture.Config(CONF)).config
        self.flags(group='api', dhcp_domain='example.org')
        # The device of the renderer's DeviceAccess is CT 101's volume.
        self.useFixture(fixtures.MockPatchObject(
            priv_containers, 'granted_devices',
            side_effect=lambda ctid: {(259, 0)} if ctid == CTID else set()))

    def test_every_argv_of_the_renderer_is_accepted(self):
        for tool, argv in every_argv():
            priv_tools.validate(tool, argv)

    def test_the_table_holds_only_what_the_renderer_sends(self):
        used = {}
        for tool, argv in every_argv():
            shape, _operands, options = commands.match(tool, argv)
            used.setdefault(shape, set()).update(name for name, _ in options)
        self.assertEqual(set(commands.SHAPES), set(used))
        for shape in commands.SHAPES:
            self.assertEqual(set(shape.options), used[shape], shape.name)

    def test_what_the_driver_never_sends_is_refused(self):
        ctid = str(CTID)
        for argv in (
                ['status', ctid], ['mount', '0'], ['umount', '0'],
                ['snapshot-switch', ctid, '--id', GUID],
                ['snapshot-list', ctid], ['suspend', ctid],
                ['exec', ctid, 'id'], ['exec2', ctid, 'id'],
                ['exec2', ctid, 'cat', '/etc/shadow'], ['enter', ctid],
                ['set', ctid, '--userpasswd', 'root:secret'],
                ['set', ctid, '--devnodes', 'sda:rw'],
                ['set', ctid, '--devices', 'b:8:0:rw'],
                ['set', ctid, '--devices', 'c:1:1:rw'],
                ['set', ctid, '--devices', 'all:rw'],
                ['set', ctid, '--devices', 'b:259:0:rwq'],
                ['set', '102', '--devices', 'b:259:0:rw'],
                ['set', ctid, '--capability', 'sys_admin:on'],
                ['set', ctid, '--features', 'nfs:on'],
                ['set', ctid, '--applyconfig', 'basic'],
                ['set', ctid, '--private', '/etc'],
                ['set', ctid, '--name', str(uuid.uuid4())],
                ['set', ctid, '--ram', '512'],
                ['set', ctid, '--netif_add', 'eth0,,,,br0;rm'],
                ['set', ctid, '--stop-timeout', '1', '--stop-timeout', '2'],
                ['create', ctid, '--ostemplate', '../x'],
                ['create', ctid, '--description', 'a"b'],
                ['start', ctid, '--force'], ['stop', ctid, '--skip-umount'],
                ['chkpnt', ctid, '--kill'], ['chkpnt', ctid, '--dump'],
                ['snapshot', ctid, '--id', '{%s}' % GUID],
                ['snapshot-mount', ctid, '--id', GUID, '--target', '/mnt'],
                ['--help'], ['--skiplock', 'destroy', ctid]):
            self.assertRaises(REJECTED, priv_tools.validate, 'vzctl', argv)
        for tool, argv in (('vzlist', ['-a']), ('vzlist', ['-a', '-j']),
                           ('ploop', ['list']), ('ploop', ['mount', '/x']),
                           ('vzmigrate', ['host', ctid]),
                           ('vzmigrate', ['--online', '-r', 'no', ctid]),
                           ('vzmigrate', ['--online', '--ssh=-oProxyCommand'
                                          '=x', 'host', ctid]),
                           ('vzmigrate', ['-r', 'yes', 'host', ctid]),
                           ('vzmigrate', ['--online', 'host', '1']),
                           ('vzmigrate', ['--check-only', 'host', '0'])):
            self.assertRaises(REJECTED, priv_tools.validate, tool, argv)

    def test_stdin_goes_with_the_script_command_only(self):
        self.assertRaises(REJECTED, priv_tools.run_host_tool, 'vzctl',
                          vz4.run_script(CTID), 10)
        self.assertRaises(REJECTED, priv_tools.run_host_tool, 'vzctl',
                          vz4.destroy(CTID), 10, 'echo')

    def test_the_renderer_checks_what_it_builds(self):
        self.assertRaises(commands.Rejected, vz4.configure, CTID, [
            settings.Limits(512, 0, 1, 1000, ioprio=9)])
        self.assertRaises(commands.Rejected, vz4.create, CTID, '../x',
                          settings.Disk('ploop', 1),
                          settings.Identity(str(uuid.uuid4()), 'x'))


#: What privsep modules may import of this project: its option
#: declarations and the privsep package itself.
_ALLOWED = ('nova_openvz.conf', 'nova_openvz.privsep')


class TestPrivsepStandsAlone(testtools.TestCase):

    def imports(self, path):
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield alias.name
            elif isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    yield '%s.%s' % (node.module, alias.name)

    def test_privsep_imports_nothing_of_the_driver(self):
        directory = os.path.dirname(privsep.__file__)
        for name in sorted(os.listdir(directory)):
            if not name.endswith('.py'):
                continue
            for module in self.imports(os.path.join(directory, name)):
                if module.startswith('nova_openvz'):
                    self.assertTrue(
                        module == 'nova_openvz.privsep' or
                        module.startswith(_ALLOWED), '%s imports %s'
                        % (name, module))

    def test_the_shared_modules_need_only_the_standard_library(self):
        # The console agent too: it runs as a script, one per host, and
        # must stay small.
        directory = os.path.dirname(privsep.__file__)
        for name in ('commands.py', 'hostpaths.py', 'vzconf.py',
                     'consoleagent.py'):
            for module in self.imports(os.path.join(directory, name)):
                top = module.split('.')[0]
                self.assertTrue(
                    top in sys.stdlib_module_names or
                    module == 'nova_openvz.privsep.vzconf',
                    '%s imports %s' % (name, module))
