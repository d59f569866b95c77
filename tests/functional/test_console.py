"""The console through Nova's API, on real containers.

The busybox template's init prints a line when it is up and one when it
halts; a container on the simulated host's real backend writes them to
its console, and the host's console agent logs it.
"""

import os
import signal
import time

from nova_openvz import allinone
from nova_openvz import conf as openvz_conf
from nova_openvz.privsep import console as priv_console

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
