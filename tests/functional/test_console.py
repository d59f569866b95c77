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

"""Console output through Nova's API, from real containers' init.

The busybox template's init prints a line when it is up and one when it
halts; a container on the simulated host's real backend writes them to
its console, and the driver's console logger keeps them.
"""

import os
import time

from nova_openvz import conf as openvz_conf
from nova_openvz.privsep import console as priv_console
from nova_openvz.testing import allinone

CONF = openvz_conf.CONF


class TestConsoleOutput(allinone.OpenVZCloudTestCase):

    def setUp(self):
        super().setUp()
        if self.kernel_backend != 'real':
            self.skipTest('needs the real kernel backend, whose containers '
                          'run init; this host runs the %s one'
                          % self.kernel_backend)

    def console(self, server, length=None):
        action = {'length': length} if length is not None else {}
        return self.api.post_server_action(
            server['id'], {'os-getConsoleOutput': action})['output']

    def wait_console(self, server, text, count=1, timeout=20):
        """The console output once ``text`` appears ``count`` times."""
        deadline = time.monotonic() + timeout
        while True:
            output = self.console(server)
            if output.count(text) >= count:
                return output
            if time.monotonic() > deadline:
                self.fail('%r not %d times on the console: %r'
                          % (text, count, output[-500:]))
            time.sleep(0.1)

    def hostname(self, server):
        return self.api.get_server(server['id'])['OS-EXT-SRV-ATTR:hostname']

    def logger_pid(self, server):
        path = os.path.join(CONF.instances_path, server['id'], 'console.pid')
        with open(path) as f:
            return int(f.read())

    def test_console_shows_init_output_of_every_boot(self):
        server = self.boot(name='console')
        up = 'nova-openvz busybox template: %s is up' % self.hostname(server)
        halts = 'nova-openvz busybox template: %s halts' % \
            self.hostname(server)
        output = self.wait_console(server, up)
        self.assertNotIn(halts, output)

        self._reboot_server(server)
        output = self.wait_console(server, up, count=2)
        self.assertIn(halts, output)
        self.assertLess(output.index(halts), output.rindex(up))

        server = self._stop_server(server)
        self.wait_console(server, halts, count=2)
        self._start_server(server)
        self.wait_console(server, up, count=3)
        # Nova's length: the last lines only.
        self.assertEqual(up, self.console(server, length=2).strip())

    def test_what_the_guest_prints_later_is_there_capped_at_100_kib(self):
        server = self.boot(name='chatty')
        ctid = self.container(server)['ctid']
        # init's standard output is the console, on OpenVZ as here.
        code, out, err = self.vzhost.run(
            'vzctl', 'exec2', ctid,
            'i=0; while [ $i -lt 3000 ]; do '
            'echo "guest line $i of a chatty service" >>/proc/1/fd/1; '
            'i=$((i+1)); done')
        self.assertEqual(0, code, err)
        output = self.wait_console(server, 'guest line 2999 of')
        self.assertEqual(100 * 1024, len(output))
        lines = output.splitlines()[1:]    # the first one is cut
        self.assertEqual(['guest line %d of a chatty service' % n
                          for n in range(3000 - len(lines), 3000)], lines)

    def test_console_logger_outlives_compute_restart_and_goes_on_delete(self):
        server = self.boot(name='kept')
        up = 'nova-openvz busybox template: %s is up' % self.hostname(server)
        self.wait_console(server, up)
        pid = self.logger_pid(server)
        self.compute = self.restart_compute_service(
            self.compute, keep_hypervisor_state=False)
        self._reboot_server(server, hard=True)
        self.wait_console(server, up, count=2)
        self.assertEqual(pid, self.logger_pid(server))

        self._delete_server(server)
        directory = os.path.join(CONF.instances_path, server['id'])
        self.assertFalse(os.path.exists(directory))
        self.assertFalse(priv_console._process_alive(pid))
        self.assertEqual([], self.vzhost.all_leftovers())
