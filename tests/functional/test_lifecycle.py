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

"""Server lifecycle through Nova's real API on a simulated OpenVZ host.

The host runs the real kernel backend where this machine allows it, else
the modelled one; ``NOVA_OPENVZ_SIM_KERNEL=modelled`` forces the modelled
one (see :mod:`nova_openvz.testing.allinone`).
"""

import os

from nova import context as nova_context

from nova_openvz.privsep import vzconf
from nova_openvz.testing import allinone


class TestLifecycle(allinone.OpenVZCloudTestCase):

    def _config(self, record):
        return vzconf.read(os.path.join(
            self.vzhost.root, 'etc/vz/conf/%d.conf' % record['ctid']))

    def test_boot_gives_a_running_container_with_the_flavor(self):
        server = self.boot(flavor_id='2')   # m1.small: 2048 MB, 1 vCPU, 20 GB
        record = self.container(server)
        self.assertIsNotNone(record, 'no container named %s' % server['id'])
        self.assertEqual('running', record['status'])
        config = self._config(record)
        self.assertEqual('0:%d' % (2048 * 256), config['PHYSPAGES'])
        self.assertEqual('1', config['CPUS'])
        self.assertEqual('%d:%d' % (20 * 1024 ** 2, 20 * 1024 ** 2),
                         config['DISKSPACE'])
        self.assertEqual('ploop', config['VE_LAYOUT'])
        self.assertIn(server['id'], config['DESCRIPTION'])
        # os_distro and os_version of the image choose the scripts.
        self.assertTrue(config['OSTEMPLATE'].startswith('debian-12-nova-'))

    def test_spawn_uses_create_one_set_and_start(self):
        before = len(self.vzhost.calls())
        self.boot()
        mutating = [c['argv'][0] for c in self.vzhost.calls()[before:]
                    if c['tool'] == 'vzctl']
        self.assertEqual(['create', 'set', 'start'], mutating)

    def test_reboot_soft_and_hard_keep_the_container_running(self):
        server = self.boot()
        ctid = self.container(server)['ctid']
        for hard in (False, True):
            before = len(self.vzhost.calls())
            self._reboot_server(server, hard=hard)
            restarts = [c['argv'] for c in self.vzhost.calls()[before:]
                        if c['tool'] == 'vzctl' and c['argv'][0] == 'restart']
            self.assertEqual(1, len(restarts))
            self.assertEqual(hard, '--fast' in restarts[0])
            record = self.container(server)
            self.assertEqual('running', record['status'])
            self.assertEqual(ctid, record['ctid'])

    def test_stop_and_start(self):
        server = self.boot()
        server = self._stop_server(server)
        self.assertEqual('SHUTOFF', server['status'])
        self.assertEqual('stopped', self.container(server)['status'])
        server = self._start_server(server)
        self.assertEqual('ACTIVE', server['status'])
        self.assertEqual('running', self.container(server)['status'])

    def test_delete_leaves_nothing_on_the_host(self):
        server = self.boot()
        ctid = self.container(server)['ctid']
        self._delete_server(server)
        self.assertIsNone(self.container(server))
        self.assertEqual([], self.vzhost.leftovers(ctid))

    def test_delete_of_a_container_left_mounted_leaves_nothing(self):
        # An operator's "vzctl mount" (or a start cut short by a crash)
        # leaves a stopped container mounted; vzctl destroy refuses it.
        server = self.boot()
        ctid = self.container(server)['ctid']
        server = self._stop_server(server)
        code, _, err = self.vzhost.run('vzctl', 'mount', ctid)
        self.assertEqual(0, code, err)
        self.assertEqual('mounted', self.container(server)['status'])
        self._delete_server(server)
        self.assertIsNone(self.container(server))
        self.assertEqual([], self.vzhost.leftovers(ctid))

    def test_a_ct_id_locked_by_another_vzctl_is_not_picked(self):
        # Another vzctl holds CT 101's lock (reference 1.1): the boot takes
        # another ID at once instead of retrying the locked one.
        with open(os.path.join(self.vzhost.root, 'vz/lock/101.lck'),
                  'w') as f:
            f.write('%d\ncreating\n' % os.getpid())
        server = self.boot()
        self.assertEqual(102, self.container(server)['ctid'])
        self.assertNotIn(['create', '101'],
                         [c['argv'][:2] for c in self.vzhost.calls()])

    def _assert_failed_boot_is_clean(self, command, exit_code, message):
        """A vzctl failure during boot: ERROR, vzctl's words, a clean host."""
        self.flags(max_attempts=1, group='scheduler')
        self.vzhost.inject_fault('vzctl', command=command,
                                 exit_code=exit_code, stderr=message)
        server = self.boot(expected_state='ERROR')
        fault = self.api.get_server(server['id'])['fault']['message']
        self.assertIn(message, fault)
        self.assertIn('exit code %d' % exit_code, fault)
        self.assertEqual([], self.vzlist())
        self.assertEqual([], self.vzhost.all_leftovers())

    def test_failed_create_shows_the_tool_message_and_cleans_up(self):
        self._assert_failed_boot_is_clean(
            'create', 48, 'tar: Unexpected EOF in archive')

    def test_failed_start_removes_the_created_container(self):
        self._assert_failed_boot_is_clean(
            'start', 133, 'Container start failed: init did not start')

    def test_a_container_whose_cleanup_failed_is_in_the_fault_and_deleted(
            self):
        # The start fails, and so does every destroy after it: the server
        # must say both, and a delete once destroy works must remove the
        # stopped container left behind.
        self.flags(max_attempts=1, group='scheduler')
        self.vzhost.inject_fault('vzctl', command='start', exit_code=133,
                                 stderr='Container start failed: no init')
        self.vzhost.inject_fault('vzctl', command='destroy', exit_code=1,
                                 stderr='Unable to remove the private area')
        # Two failed destroys (the driver's, then Nova's) take a while.
        server = self._wait_for_state_change(self.api.post_server(
            {'server': self._build_server(
                image_uuid=allinone.TEMPLATE_IMAGE_ID, flavor_id='1',
                networks='none')}), 'ERROR', max_retries=120)
        fault = self.api.get_server(server['id'])['fault']['message']
        self.assertIn('Container start failed: no init', fault)
        self.assertIn('Unable to remove the private area', fault)
        self.assertEqual('stopped', self.container(server)['status'])
        os.unlink(self.vzhost.sim_path('faults.json'))
        # Nova took the aborted build off the host, so the delete is the
        # API's alone; the container still names the deleted server, and
        # Nova's reaper of deleted instances (run at start and every
        # running_deleted_instance_poll_interval) destroys it.
        self._delete_server(server)
        self.compute.manager._cleanup_running_deleted_instances(
            nova_context.get_admin_context())
        self.assertEqual([], self.vzlist())
        self.assertEqual([], self.vzhost.all_leftovers())

    def test_compute_restart_keeps_every_server_state(self):
        running = self.boot(name='running')
        stopped = self._stop_server(self.boot(name='stopped'))
        self.compute = self.restart_compute_service(
            self.compute, keep_hypervisor_state=False)
        self.assertEqual('ACTIVE',
                         self.api.get_server(running['id'])['status'])
        self.assertEqual('SHUTOFF',
                         self.api.get_server(stopped['id'])['status'])
        self.assertEqual('running', self.container(running)['status'])
        self.assertEqual('stopped', self.container(stopped)['status'])
        # The new driver instance still manages the old containers.
        self._reboot_server(running, hard=True)
        self._start_server(stopped)
        self.assertEqual('running', self.container(stopped)['status'])

    def test_a_display_name_with_accents_boots_with_a_plain_hostname(self):
        # Nova keeps Latin-1 letters in the hostname it derives from a
        # display name; the kernel takes only a DNS-style name.
        server = self.boot(name='Café Ünïcode')
        self.assertEqual('ACTIVE', server['status'])
        self.assertEqual('cafe-unicode',
                         self._config(self.container(server))['HOSTNAME'])

    def test_inside_the_container_hostname_and_memory_match_the_server(self):
        if self.kernel_backend != 'real':
            self.skipTest('needs the real kernel backend (root and the '
                          'kernel features realkernel.probe checks); this '
                          'host runs the %s one' % self.kernel_backend)
        server = self.boot(name='inside')   # m1.tiny: 512 MB
        ctid = self.container(server)['ctid']
        hostname = self.api.get_server(
            server['id'])['OS-EXT-SRV-ATTR:hostname']
        code, out, err = self.vzhost.run('vzctl', 'exec2', ctid, 'hostname')
        self.assertEqual(0, code, err)
        self.assertEqual(hostname, out.strip())
        # The container's own cgroups, as the real backend mounts them
        # (cgroup v1 memory controller, or the v2 unified hierarchy).
        code, out, err = self.vzhost.run(
            'vzctl', 'exec2', ctid,
            'cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null'
            ' || cat /sys/fs/cgroup/memory.max')
        self.assertEqual(0, code, err)
        self.assertEqual(512 * 1024 ** 2, int(out))
