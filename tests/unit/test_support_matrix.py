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

"""The support matrix must say what the driver really implements."""

import configparser
import os

from nova.virt import driver as nova_driver
import testtools

from nova_openvz import driver

MATRIX = os.path.join(os.path.dirname(__file__), '..', '..', 'doc',
                      'source', 'user', 'support-matrix.ini')


def _implemented(method):
    ours = getattr(driver.OpenVZDriver, method, None)
    base = getattr(nova_driver.ComputeDriver, method, None)
    return ours is not None and ours is not base


class TestSupportMatrix(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.matrix = configparser.ConfigParser()
        self.assertEqual([MATRIX], self.matrix.read(MATRIX))
        self.operations = [s for s in self.matrix.sections()
                           if s.startswith('operation.')]

    def test_every_operation_names_methods_and_a_status(self):
        self.assertGreater(len(self.operations), 20)
        for section in self.operations:
            self.assertIn(self.matrix[section]['driver.openvz'],
                          ('complete', 'partial', 'missing'), section)
            self.assertTrue(self.matrix[section]['methods'], section)

    def test_statuses_match_the_driver(self):
        for section in self.operations:
            status = self.matrix[section]['driver.openvz']
            methods = self.matrix[section]['methods'].split(',')
            done = [m for m in methods if _implemented(m)]
            if status in ('complete', 'partial'):
                self.assertEqual(methods, done,
                                 '%s is %s but lacks methods' %
                                 (section, status))
            elif set(methods) - {'spawn'} and \
                    not self.matrix[section].get('capabilities'):
                # (A capability row's methods may serve other operations:
                # the capabilities decide, in the test below.)
                self.assertEqual(
                    [], [m for m in done if m != 'spawn'],
                    '%s is missing but the driver implements it' % section)

    def test_capabilities_follow_the_statuses(self):
        # An operation Nova gates on driver capabilities (traits) is
        # complete or partial exactly when the driver reports them all.
        rows = [s for s in self.operations
                if self.matrix[s].get('capabilities')]
        self.assertTrue(rows)
        for section in rows:
            supported = self.matrix[section]['driver.openvz'] != 'missing'
            for name in self.matrix[section]['capabilities'].split(','):
                self.assertEqual(
                    supported, driver.OpenVZDriver.capabilities[name.strip()],
                    '%s: %s' % (section, name))
