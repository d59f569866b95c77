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

"""The console through Nova's API, on real containers.

The busybox template's init prints a line when it is up and one when it
halts, and runs a shell reading what is typed on the console; a container
on the simulated host's real backend writes to its console, and the host's
console agent logs it and serves it as Nova's serial console.
"""

import os
import signal
import socket
import time
from urllib import parse

from nova import context as nova_context
from nova import objects

from nova_openvz import conf as openvz_conf
from nova_openvz.privsep import console as priv_console
from nova_openvz.testing import allinone

CONF = openvz_conf.CONF


class ConsoleTestCase(allinone.OpenVZCloudTestCase):

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

    def agent(self):
        """``{"pid": N, "sessions": [...]}`` of the host's console agent."""
        return priv_console.console_agent_status()

    def session(self, server):
        for session in (self.agent() or {'sessions': []})['sessions']:
            if session['name'] == server['id']:
                return session


class TestConsoleOutput(ConsoleTestCase):

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

    def test_console_agent_outlives_compute_restart_and_delete_detaches(self):
        server = self.boot(name='kept')
        other = self.boot(name='other')
        up = 'nova-openvz busybox template: %s is up' % self.hostname(server)
        self.wait_console(server, up)
        agent = self.agent()
        self.assertEqual({server['id'], other['id']},
                         {s['name'] for s in agent['sessions']})
        self.compute = self.restart_compute_service(
            self.compute, keep_hypervisor_state=False)
        self._reboot_server(server, hard=True)
        self.wait_console(server, up, count=2)
        self.assertEqual(agent, self.agent())

        self._delete_server(server)
        directory = os.path.join(CONF.instances_path, server['id'])
        self.assertFalse(os.path.exists(directory))
        self.assertIsNone(self.session(server))
        self.assertIsNotNone(self.session(other))
        self._delete_server(other)
        self.assertEqual([], self.vzhost.all_leftovers())

    def test_a_dead_agent_is_replaced_with_every_console(self):
        server = self.boot(name='first')
        other = self.boot(name='second')
        agent = self.agent()['pid']
        os.kill(agent, signal.SIGKILL)
        # Reading one console starts a new agent that attaches them all.
        self.console(server)
        self.assertNotEqual(agent, self.agent()['pid'])
        self.assertIsNotNone(self.session(other))
        self._reboot_server(other)
        self.wait_console(other, 'nova-openvz busybox template: %s halts'
                          % self.hostname(other))


class TestSerialConsole(ConsoleTestCase):
    """``openstack console url show --serial``, as nova-serialproxy uses it.

    nova-serialproxy does not run here: the test does what it does with
    the URL's token -- validates it with Nova's ConsoleAuthToken and
    connects to the host and port the driver returned -- then types on
    that TCP connection as the proxy would from a browser's websocket.
    """

    def setUp(self):
        super().setUp()
        self.flags(enabled=True, port_range='27600:27700',
                   group='serial_console')

    def serial_url(self, server):
        return self.api.api_post(
            '/servers/%s/remote-consoles' % server['id'],
            {'remote_console': {'protocol': 'serial', 'type': 'serial'}}
        ).body['remote_console']

    def target(self, url):
        """``(host, port)`` behind the URL's token, as the proxy finds it."""
        token = parse.parse_qs(parse.urlparse(url).query)['token'][0]
        target = objects.ConsoleAuthToken.validate(
            nova_context.get_admin_context(), token)
        return target.host, target.port

    def connect(self, url):
        client = socket.create_connection(self.target(url), 10)
        self.addCleanup(client.close)
        client.settimeout(20)
        return client

    def read_until(self, client, text):
        data = b''
        while text not in data:
            chunk = client.recv(4096)
            self.assertTrue(chunk, 'the console closed: %r' % data[-300:])
            data += chunk
        return data

    def test_typed_command_runs_and_the_log_keeps_recording(self):
        server = self.boot(name='serial')
        self.wait_console(server, 'nova-openvz busybox template: %s is up'
                          % self.hostname(server))
        console = self.serial_url(server)
        self.assertEqual('serial', console['protocol'])
        self.assertTrue(console['url'].startswith(
            CONF.serial_console.base_url))
        client = self.connect(console['url'])
        # Enter is CR on a terminal; what runs prints 42, not what was typed.
        client.sendall(b'echo typed on $(hostname): $((6*7))\r')
        self.read_until(client, ('typed on %s: 42' % self.hostname(
            server)).encode())
        self.wait_console(server, 'typed on %s: 42' % self.hostname(server))
        # The log still records boots, and the port stays the same.
        self.assertEqual(self.target(console['url']),
                         self.target(self.serial_url(server)['url']))
        self._reboot_server(server)
        self.read_until(client, b'halts')
        self.wait_console(server, 'halts')

    def test_disabled_serial_console_is_refused(self):
        self.flags(enabled=False, group='serial_console')
        server = self.boot(name='no-serial')
        self.api.api_post(
            '/servers/%s/remote-consoles' % server['id'],
            {'remote_console': {'protocol': 'serial', 'type': 'serial'}},
            check_response_status=[400])
