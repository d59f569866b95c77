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

"""Resize on the same host, live, through Nova's real API.

The guest's processes must not notice: its init (seen from the host) and
a process started inside before the resize are the same afterwards, while
the new limits are seen from inside.  These need the real kernel backend.
"""

import os
import subprocess
import sys

from nova.compute import instance_actions

from nova_openvz.privsep import vzconf
from nova_openvz.testing import allinone
from tests.functional import test_network

#: Host PID of a container's init and its start time (clock ticks since
#: boot), printed by a child process: Nova's test base forbids reading
#: /proc in the test process.
_INIT_SCRIPT = '''
import sys
from vzsim import hostfs
from vzsim.kernel import real
pid = real.RealKernel(hostfs.Host(sys.argv[1])).init_pid(int(sys.argv[2]))
with open('/proc/%d/stat' % pid) as f:
    print(pid, f.read().rpartition(')')[2].split()[19])
'''

#: Whether vzctl may grow a mounted ploop image here: the simulated host
#: needs CAP_SYS_RESOURCE for resize2fs on the loop device (real OpenVZ
#: grows ploop online anywhere).  Asked in a child process, as above.
_CAN_GROW_SCRIPT = '''
from vzsim.kernel import ploop
print(ploop.can_resize_online())
'''

GB_KB = 1024 ** 2


class TestResize(allinone.OpenVZCloudTestCase):

    # Casts stay casts, as between real services: a failure on the compute
    # host ends in the server's fault, not in the API call that asked.
    CAST_AS_CALL = False

    def setUp(self):
        super().setUp()
        if self.kernel_backend != 'real':
            self.skipTest('needs the real kernel backend (root and the '
                          'kernel features realkernel.probe checks); this '
                          'host runs the %s one' % self.kernel_backend)
        self.rp_uuid = self._get_provider_uuid_by_host('compute')
        # m1.tiny (flavor 1): 512 MB, 1 vCPU, 1 GB.
        self.bigger = self._create_flavor(
            name='bigger', memory_mb=1024, vcpu=2, disk=1, ephemeral=0)
        self.bigger_disk = self._create_flavor(
            name='bigger-disk', memory_mb=1024, vcpu=2, disk=3, ephemeral=0)

    # Looking at the container -------------------------------------------

    def _config(self, server):
        return vzconf.read(os.path.join(
            self.vzhost.root,
            'etc/vz/conf/%d.conf' % self.container(server)['ctid']))

    def _exec(self, server, command):
        code, out, err = self.vzhost.run(
            'vzctl', 'exec2', self.container(server)['ctid'], command)
        self.assertEqual(0, code, err)
        return out.strip()

    def _init(self, server):
        """``(host PID, start time)`` of the container's init."""
        out = subprocess.run(
            [sys.executable, '-c', _INIT_SCRIPT, self.vzhost.root,
             str(self.container(server)['ctid'])],
            check=True, capture_output=True, text=True).stdout
        return tuple(int(word) for word in out.split())

    def _start_sleeper(self, server):
        """A process inside: ``(PID inside, its start time)``."""
        pid = int(self._exec(
            server, 'sleep 100000 </dev/null >/dev/null 2>&1 & echo $!'))
        return pid, self._started(server, pid)

    def _started(self, server, pid):
        stat = self._exec(server, 'cat /proc/%d/stat' % pid)
        return int(stat.rpartition(')')[2].split()[19])

    def _memory_limit(self, server):
        """The memory limit the guest sees in its own cgroup."""
        return int(self._exec(
            server,
            'cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null'
            ' || cat /sys/fs/cgroup/memory.max'))

    def _root_size_kb(self, server):
        """The size of the guest's root file system, from its df."""
        line = self._exec(server, 'df -k / | tail -n 1')
        return int(line.split()[1])

    def _restarts(self, since):
        return [c['argv'][0] for c in self.vzhost.calls()[since:]
                if c['tool'] == 'vzctl' and
                c['argv'][0] in ('stop', 'start', 'restart')]

    def _flavor(self, flavor_id):
        return self.api.get_flavor(flavor_id)

    def _assert_limits(self, server, memory_mb, vcpus):
        config = self._config(server)
        self.assertEqual('0:%d' % (memory_mb * 256), config['PHYSPAGES'])
        self.assertEqual(str(vcpus), config['CPUS'])
        self.assertEqual(memory_mb * 1024 ** 2, self._memory_limit(server))

    # Tests ------------------------------------------------------------------

    def _resize_live_and_confirm(self, flavor_id, memory_mb, vcpus):
        """Resize a running m1.tiny server to ``flavor_id`` and confirm."""
        server = self.boot(flavor_id='1')
        init = self._init(server)
        sleeper = self._start_sleeper(server)
        self._assert_limits(server, 512, 1)
        before = len(self.vzhost.calls())

        server = self._resize_server(server, flavor_id)

        # VERIFY_RESIZE: the new flavor is already live, and placement
        # holds both flavors on this host until the confirm.
        self._assert_limits(server, memory_mb, vcpus)
        self.assertFlavorMatchesAllocation(
            self._flavor(flavor_id), server['id'], self.rp_uuid)
        migration = self.get_migration_uuid_for_instance(server['id'])
        self.assertFlavorMatchesAllocation(
            self._flavor('1'), migration, self.rp_uuid)

        server = self._confirm_resize(server)
        self.assertEqual('ACTIVE', server['status'])
        self._assert_limits(server, memory_mb, vcpus)
        self.assertEqual({}, self._get_allocations_by_server_uuid(migration))
        self.assertFlavorMatchesAllocation(
            self._flavor(flavor_id), server['id'], self.rp_uuid)
        # Never stopped: the same init, the same process inside.
        self.assertEqual([], self._restarts(before))
        self.assertEqual(init, self._init(server))
        self.assertEqual(sleeper[1], self._started(server, sleeper[0]))
        return server

    def test_resize_up_is_live_and_confirm_keeps_it(self):
        server = self._resize_live_and_confirm(self.bigger, 1024, 2)
        self.assertEqual('%d:%d' % (GB_KB, GB_KB),
                         self._config(server)['DISKSPACE'])

    def test_the_ploop_disk_grows_under_the_running_guest(self):
        can_grow = subprocess.run(
            [sys.executable, '-c', _CAN_GROW_SCRIPT], check=True,
            capture_output=True, text=True).stdout.strip()
        if can_grow != 'True':
            self.skipTest('this machine withholds CAP_SYS_RESOURCE, which '
                          'the simulated ploop needs to grow a mounted '
                          'image (test_a_stopped_server_gets_its_disk_grown '
                          'covers the growth)')
        server = self._resize_live_and_confirm(self.bigger_disk, 1024, 2)
        self.assertEqual('%d:%d' % (3 * GB_KB, 3 * GB_KB),
                         self._config(server)['DISKSPACE'])
        self.assertGreater(self._root_size_kb(server), 2 * GB_KB)

    def test_a_stopped_server_gets_its_disk_grown(self):
        server = self._grown_while_stopped()
        self.assertEqual('stopped', self.container(server)['status'])
        self.assertEqual('%d:%d' % (3 * GB_KB, 3 * GB_KB),
                         self._config(server)['DISKSPACE'])
        server = self._start_server(server)
        self.assertGreater(self._root_size_kb(server), 2 * GB_KB)
        self._assert_limits(server, 1024, 2)

    def test_revert_puts_the_old_limits_back_live(self):
        server = self.boot(flavor_id='1')
        init = self._init(server)
        sleeper = self._start_sleeper(server)
        before = len(self.vzhost.calls())
        server = self._resize_server(server, self.bigger)
        self._assert_limits(server, 1024, 2)
        migration = self.get_migration_uuid_for_instance(server['id'])

        server = self._revert_resize(server)
        self.assertEqual('ACTIVE', server['status'])
        self.assertEqual('m1.tiny', server['flavor']['original_name'])
        self._assert_limits(server, 512, 1)
        self.assertEqual('%d:%d' % (GB_KB, GB_KB),
                         self._config(server)['DISKSPACE'])
        self.assertEqual({}, self._get_allocations_by_server_uuid(migration))
        self.assertFlavorMatchesAllocation(
            self._flavor('1'), server['id'], self.rp_uuid)
        self.assertEqual([], self._restarts(before))
        self.assertEqual(init, self._init(server))
        self.assertEqual(sleeper[1], self._started(server, sleeper[0]))

    def _resize_fails(self, server, flavor_id, status='ACTIVE'):
        """Ask for a resize that fails.

        :returns: the server as the API shows it, and the reason the
            user reads in the failed action's event (an ACTIVE server
            shows no ``fault``; its resize action carries it).
        """
        self.api.post_server_action(
            server['id'], {'resize': {'flavorRef': flavor_id}})
        event = self._wait_for_action_fail_completion(
            server, instance_actions.RESIZE, 'compute_resize_instance')
        return self._wait_for_state_change(server, status), event['details']

    def _grown_while_stopped(self):
        """An m1.tiny server resized to 3 GB while stopped, running again.

        Nova takes the boot flavor's disk as the image's minimum, so this
        is how a server gets a disk it could shrink.
        """
        server = self._stop_server(self.boot(flavor_id='1'))
        server = self._resize_server(server, self.bigger_disk)
        self.api.post_server_action(server['id'], {'confirmResize': None})
        server = self._wait_for_state_change(server, 'SHUTOFF')
        self._wait_for_instance_action_event(
            server, instance_actions.CONFIRM_RESIZE,
            'compute_confirm_resize', 'success')
        return server

    def _assert_unchanged(self, server, memory_mb, vcpus, disk_gb, init):
        self._assert_limits(server, memory_mb, vcpus)
        self.assertEqual('%d:%d' % (disk_gb * GB_KB, disk_gb * GB_KB),
                         self._config(server)['DISKSPACE'])
        self.assertEqual(init, self._init(server))
        self.assertEqual('running', self.container(server)['status'])

    def test_shrinking_below_what_is_used_is_refused(self):
        server = self._start_server(self._grown_while_stopped())
        init = self._init(server)
        # 1.2 GB in the guest's root, more than the 1 GB of m1.tiny.
        self._exec(server, 'dd if=/dev/zero of=/big bs=1M count=1200 '
                           '2>/dev/null && sync')
        before = len(self.vzhost.calls())

        server, fault = self._resize_fails(server, '1')

        self.assertIn('Resize error: the disk holds 1.', fault)
        self.assertIn("more than the new flavor's 1 GB", fault)
        self.assertEqual('bigger-disk', server['flavor']['original_name'])
        self._assert_unchanged(server, 1024, 2, 3, init)
        self.assertEqual([], [c for c in self.vzhost.calls()[before:]
                              if c['tool'] == 'vzctl' and
                              c['argv'][0] == 'set'])
        self.assertFlavorMatchesAllocation(
            self._flavor(self.bigger_disk), server['id'], self.rp_uuid)

    def test_a_failed_disk_growth_puts_the_old_limits_back(self):
        server = self.boot(flavor_id='1')
        init = self._init(server)
        ctid = self.container(server)['ctid']
        # The limits' set works; the disk's (the second) fails.
        self.vzhost.inject_fault(
            'vzctl', command='set', call=2, ctid=ctid, exit_code=154,
            stderr='Failed to resize image: ploop resize failed')

        server, fault = self._resize_fails(server, self.bigger_disk)

        self.assertIn('ploop resize failed', fault)
        self.assertIn('exit code 154', fault)
        self.assertEqual('m1.tiny', server['flavor']['original_name'])
        self._assert_unchanged(server, 512, 1, 1, init)
        self.assertFlavorMatchesAllocation(
            self._flavor('1'), server['id'], self.rp_uuid)


class TestResizeKeepsThePorts(test_network.NetworkTestCase):

    def test_the_port_stays_plugged_through_resize_revert_and_confirm(self):
        port, peer_port = self.make_port(), self.make_port()
        server = self.boot_on_ports('resized', [port])
        peer = self.boot_on_ports('peer', [peer_port])
        device = ('tap' + port['id'])[:14]
        # The switch's row for the device: a new one if it were replugged.
        row = self.switch.interface(device, '_uuid')
        bigger = self._create_flavor(name='bigger', memory_mb=1024, vcpu=2,
                                     disk=1, ephemeral=0)

        server = self._resize_server(server, bigger)
        self.ping(peer, self.ipv4(port))
        server = self._revert_resize(server)
        self.ping(peer, self.ipv4(port))
        server = self._confirm_resize(self._resize_server(server, bigger))
        self.ping(peer, self.ipv4(port))

        self.assertEqual(row, self.switch.interface(device, '_uuid'))
        self.assertEqual(self.ipv4(port) + '/24', self.inside(
            server, 'ip -o -4 addr show dev eth0').split()[3])
