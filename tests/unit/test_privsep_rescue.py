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

"""The rescue container's scripts that show the rescued server's root."""

import os

import testtools

from nova_openvz import privsep
from nova_openvz.privsep import rescue as priv_rescue
from nova_openvz.testing import fixtures as sim_fixture

REJECTED = privsep.ArgumentRejected


class TestRescueScripts(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.host = self.useFixture(sim_fixture.SimulatedHostFixture())
        self.useFixture(sim_fixture.InProcessPrivsep())
        self.conf_dir = os.path.join(self.host.root, 'etc/vz/conf')

    def script(self, ctid, suffix):
        with open(os.path.join(self.conf_dir, '%d.%s' % (ctid, suffix))) as f:
            return f.read()

    def test_the_rescued_root_is_bound_at_mnt_rescue(self):
        priv_rescue.write_rescue_scripts(102, 101)
        source = os.path.join(self.host.root, 'vz/root/101')
        target = os.path.join(self.host.root, 'vz/root/102/mnt/rescue')
        mount = self.script(102, 'mount')
        # Refused unless vzctl mount put the server's root there.
        self.assertIn("[ -n \"$(ls -A '%s' 2>/dev/null)\" ] || " % source,
                      mount)
        # No link in the rescue image leads the mount to the host.
        for step in ('mnt', 'mnt/rescue'):
            self.assertIn("[ -L '%s/vz/root/102/%s' ] && exit 1; "
                          % (self.host.root, step), mount)
        self.assertIn("mkdir -p '%s' && mount -n --bind '%s' '%s' || exit 1"
                      % (target, source, target), mount)
        self.assertIn("umount -n '%s' || exit 1" % target,
                      self.script(102, 'umount'))
        self.assertFalse(os.path.exists(os.path.join(self.conf_dir,
                                                     '101.mount')))

    def test_only_two_of_novas_containers(self):
        self.assertRaises(REJECTED, priv_rescue.write_rescue_scripts,
                          101, 101)
        self.assertRaises(REJECTED, priv_rescue.write_rescue_scripts, 101, 0)
        self.assertRaises(REJECTED, priv_rescue.write_rescue_scripts, 0, 101)
