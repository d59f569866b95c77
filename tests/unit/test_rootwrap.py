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

"""The shipped rootwrap filters against the argv nova-compute builds.

``etc/nova/rootwrap.d/openvz.filters`` (installed into the environment's
``etc/nova/rootwrap.d`` with the package).

nova-compute (``nova/cmd/compute.py``) sets oslo.privsep's root helper to
``sudo nova-rootwrap <rootwrap_config>``; oslo.privsep then appends
``privsep-helper``, one ``--config-file`` per file nova-compute was started
with, and the context and socket.  nova-rootwrap sees what follows its own
configuration file and must find a filter for it.
"""

import os
import sys
from unittest import mock

from os_brick import privileged as brick_privileged
from oslo_config import cfg
from oslo_privsep import priv_context
from oslo_rootwrap import wrapper
import testtools
from vif_plug_ovs import privsep as ovs_privsep

from nova_openvz import privsep

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
FILTERS = os.path.join(ROOT, 'etc', 'nova', 'rootwrap.d')
SOCK = '/tmp/tmpa1b2c3d4/privsep.sock'
ROOT_HELPER = ['sudo', 'nova-rootwrap', '/etc/nova/rootwrap.conf']


class TestShippedFilters(testtools.TestCase):

    def setUp(self):
        super().setUp()
        # oslo.rootwrap >= 6 adds a catch-all "privsep-helper" filter to
        # whatever it loads; the shipped lines are for the rootwraps that
        # do not, and for operators who remove it. Judge them alone.
        self.filters = [f for f in wrapper.load_filters([FILTERS])
                        if f.name != 'privsep-helper']
        self.assertEqual(6, len(self.filters))
        # nova-rootwrap looks the helper up in rootwrap.conf's exec_dirs:
        # here, the bin directory of this environment.
        self.exec_dirs = [os.path.dirname(sys.executable)]

    def argv(self, context, config_files, config_dirs=None):
        """What nova-compute runs to start ``context``'s daemon."""
        with mock.patch.object(priv_context, '_HELPER_COMMAND_PREFIX',
                               ROOT_HELPER), \
                mock.patch.object(cfg.CONF, 'config_file', config_files,
                                  create=True), \
                mock.patch.object(cfg.CONF, 'config_dir', config_dirs,
                                  create=True):
            return context.helper_command(SOCK)

    def matched(self, argv):
        """The filter nova-rootwrap picks, or None when it refuses."""
        self.assertEqual(ROOT_HELPER, argv[:3])
        try:
            return wrapper.match_filter(self.filters, argv[3:],
                                        exec_dirs=self.exec_dirs)
        except wrapper.NoFilterMatched:
            return None

    def test_the_driver_context_with_nova_conf_and_nova_cpu_conf(self):
        argv = self.argv(privsep.vz_pctxt, ['/etc/nova/nova.conf',
                                            '/etc/nova/nova-cpu.conf'])
        self.assertEqual(
            ROOT_HELPER + ['privsep-helper',
                           '--config-file', '/etc/nova/nova.conf',
                           '--config-file', '/etc/nova/nova-cpu.conf',
                           '--privsep_context',
                           'nova_openvz.privsep.vz_pctxt',
                           '--privsep_sock_path', SOCK], argv)
        self.assertIsNotNone(self.matched(argv))

    def test_the_driver_context_with_one_config_file(self):
        argv = self.argv(privsep.vz_pctxt, ['/etc/nova/nova.conf'])
        self.assertIsNotNone(self.matched(argv))

    def test_os_vif_and_os_brick_contexts_with_one_or_two_config_files(self):
        # os-vif plugs ports; os-brick connects volumes (a cloud with
        # Cinder found it missing).
        for context, name in ((ovs_privsep.vif_plug,
                               'vif_plug_ovs.privsep.vif_plug'),
                              (brick_privileged.default,
                               'os_brick.privileged.default')):
            for files in (['/etc/nova/nova.conf'],
                          ['/etc/nova/nova.conf', '/etc/nova/nova-cpu.conf']):
                argv = self.argv(context, files)
                self.assertIn(name, argv)
                self.assertIsNotNone(self.matched(argv), argv)

    def test_what_the_filters_refuse(self):
        nova_conf = ['/etc/nova/nova.conf']
        # Configuration outside /etc, or escaping it.
        self.assertIsNone(self.matched(self.argv(
            privsep.vz_pctxt, ['/home/nova/nova.conf'])))
        self.assertIsNone(self.matched(self.argv(
            privsep.vz_pctxt, ['/etc/../home/nova/nova.conf'])))
        # Another context.
        other = priv_context.PrivContext(
            'x', cfg_section='x_privsep', pypath=__name__ + '.OTHER',
            capabilities=[])
        with mock.patch.object(sys.modules[__name__], 'OTHER', other,
                               create=True):
            self.assertIsNone(self.matched(self.argv(other, nova_conf)))
        # Three configuration files, or a configuration directory.
        self.assertIsNone(self.matched(self.argv(
            privsep.vz_pctxt, nova_conf * 3)))
        self.assertIsNone(self.matched(self.argv(
            privsep.vz_pctxt, nova_conf, ['/etc/nova/nova.conf.d'])))
        # A socket outside /tmp.
        argv = self.argv(privsep.vz_pctxt, nova_conf)
        argv[-1] = '/run/x.sock'
        self.assertIsNone(self.matched(argv))
