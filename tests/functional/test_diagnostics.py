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

"""Diagnostics through Nova's API, from the host's own counters.

A server on a port works inside (a busy loop, traffic, a file written,
more processes than its flavor allows) and its diagnostics follow: CPU
time from /proc/vz/vestat, the veth host end's counters, the ploop
device's writes, the beancounters' failcnt.  Needs the real kernel
backend and the private switch (``NETWORKING``).
"""

from nova_openvz.testing import allinone

BUSY_LOOP = 'i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done'


class TestDiagnostics(allinone.OpenVZCloudTestCase):

    NETWORKING = True

    def exec2(self, server, command):
        ctid = self.container(server)['ctid']
        code, out, err = self.vzhost.run('vzctl', 'exec2', ctid, command)
        self.assertEqual(0, code, err)
        return out

    def diagnostics(self, server, version='latest'):
        self.api.microversion = version
        try:
            return self.api.get_server_diagnostics(server['id'])
        finally:
            self.api.microversion = 'latest'

    def test_counters_move_under_load_inside_the_guest(self):
        flavor = self._create_flavor(
            memory_mb=512, vcpu=1, disk=1, ephemeral=0,
            extra_spec={'openvz:numproc': '24'})
        port = self.make_port()
        server = self.boot_on_ports('busy', [port], flavorRef=flavor)
        before = self.diagnostics(server)
        self.assertEqual('running', before['state'])
        # The closest of the four driver names Nova's API knows.
        self.assertEqual('libvirt', before['driver'])
        self.assertEqual('openvz', before['hypervisor'])
        self.assertEqual(512, before['memory_details']['maximum'])
        self.assertGreater(before['memory_details']['used'], 0)
        self.assertEqual(1, before['num_nics'])
        self.assertEqual(port['mac_address'],
                         before['nic_details'][0]['mac_address'])
        self.assertEqual(1, before['num_disks'])

        self.exec2(server, BUSY_LOOP)
        self.exec2(server, 'ping -c 3 -W 1 192.168.1.1 >/dev/null; true')
        self.exec2(server, 'dd if=/dev/urandom of=/root/blob bs=64k '
                           'count=64 2>/dev/null && sync')
        after = self.diagnostics(server)
        self.assertGreater(after['cpu_details'][0]['time'],
                           before['cpu_details'][0]['time'])
        self.assertGreater(after['nic_details'][0]['tx_packets'],
                           before['nic_details'][0]['tx_packets'])
        self.assertGreater(after['nic_details'][0]['tx_octets'],
                           before['nic_details'][0]['tx_octets'])
        self.assertGreaterEqual(
            after['disk_details'][0]['write_bytes'] -
            before['disk_details'][0]['write_bytes'], 64 * 64 * 1024)
        self.assertGreater(after['uptime'], 0)

        # More processes than the flavor's 24: the kernel refuses some,
        # and the legacy form shows numproc's failcnt with its limit.
        legacy = self.diagnostics(server, version='2.1')
        self.assertEqual(0, legacy['ubc_numproc_failcnt'])
        # (Their output away from vzctl's pipe, or exec2 waits for them.)
        self.exec2(server, '(for i in $(seq 40); do sleep 600 </dev/null '
                           '>/dev/null 2>&1 & done) 2>/dev/null; true')
        legacy = self.diagnostics(server, version='2.1')
        self.assertGreater(legacy['ubc_numproc_failcnt'], 0)
        self.assertEqual(24, legacy['ubc_numproc_limit'])
        self.assertGreaterEqual(legacy['ubc_numproc_maxheld'],
                                legacy['ubc_numproc_held'])
        self.assertGreater(legacy['cpu0_time'], 0)
        self.assertEqual(512 * 1024, legacy['memory-actual'])
        self.assertIn('eth0_tx_packets', legacy)
        self.assertGreater(legacy['disk_usage_kb'], 0)

    def test_host_cpu_stats_come_from_proc_stat(self):
        stats = self.computes['compute'].driver.get_host_cpu_stats()
        self.assertEqual({'kernel', 'idle', 'user', 'iowait', 'frequency'},
                         set(stats))
        self.assertGreater(stats['idle'] + stats['user'], 0)
