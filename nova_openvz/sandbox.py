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

"""``nova-openvz sandbox``: a guided tour of the driver on a simulated host.

Starts an all-in-one Nova in this process with the OpenVZ driver on a fresh
simulated host -- on the real kernel backend (real containers) when this
machine allows it, else the modelled one; the first line says which, and
``NOVA_OPENVZ_SIM_KERNEL`` chooses (see :mod:`nova_openvz.testing.allinone`) --
uploads a small OS template image, then boots a server,
reboots it (soft and hard), stops and starts it, shows the end of its
console log, and deletes it.  Each step
prints its elapsed time and the host commands the driver issued.  The exit
code is non-zero when any step fails.
"""

import sys
import time
import unittest

from nova_openvz import hosttools
from nova_openvz.testing import allinone

_OUT = sys.stdout


class SandboxTour(allinone.OpenVZCloudTestCase):
    """The sandbox's steps, run by unittest so Nova's harness is set up."""

    def setUp(self):
        started = time.monotonic()
        super().setUp()
        _OUT.write('nova-openvz sandbox: %s kernel backend; all-in-one Nova '
                   'with the OpenVZ driver on a simulated host at %s '
                   '(%.1fs)\n' % (self.kernel_backend, self.vzhost.root,
                                  time.monotonic() - started))
        self.commands = []
        hosttools.add_listener(self.commands.append)
        self.addCleanup(hosttools.remove_listener, self.commands.append)

    def step(self, title, action):
        del self.commands[:]
        started = time.monotonic()
        result = action()
        _OUT.write('\n%-28s %6.2fs\n' % (title, time.monotonic() - started))
        for call in self.commands:
            _OUT.write('    %-6s %-60s exit %s  %.3fs\n' % (
                call.tool, ' '.join(call.argv)[:60], call.exit_code,
                call.seconds))
        _OUT.flush()
        return result

    def console_output(self, server, length):
        """What ``openstack console log show --lines N`` shows."""
        return self.api.post_server_action(server['id'], {
            'os-getConsoleOutput': {'length': length}})['output']

    def test_tour(self):
        server = self.step('boot server (ACTIVE)', lambda: self.boot('tour'))
        self.assertEqual('running', self.container(server)['status'])
        self.step('soft reboot', lambda: self._reboot_server(server))
        self.step('hard reboot',
                  lambda: self._reboot_server(server, hard=True))
        self.assertEqual('running', self.container(server)['status'])
        self.step('stop (SHUTOFF)', lambda: self._stop_server(server))
        self.assertEqual('stopped', self.container(server)['status'])
        self.step('start (ACTIVE)', lambda: self._start_server(server))
        self.assertEqual('running', self.container(server)['status'])
        output = self.step('console log (last 5 lines)',
                           lambda: self.console_output(server, 5))
        for line in output.splitlines():
            _OUT.write('    | %s\n' % line)
        self.step('delete', lambda: self._delete_server(server))
        self.assertIsNone(self.container(server))
        self.assertEqual([], self.vzhost.all_leftovers())


def main():
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(SandboxTour)
    result = unittest.TextTestRunner(stream=sys.stderr, verbosity=0).run(
        suite)
    if result.wasSuccessful():
        _OUT.write('\nsandbox: every step succeeded\n')
        return 0
    _OUT.write('\nsandbox: FAILED (details above)\n')
    return 1
