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

"""The fault matrix page is the table the functional test checks."""

import os

import testtools

from nova_openvz.testing import faultmatrix

PAGE = os.path.join(os.path.dirname(__file__), '..', '..', 'doc', 'source',
                    'admin', 'fault-matrix.rst')


class TestFaultMatrixPage(testtools.TestCase):

    def test_page_is_generated_from_the_matrix(self):
        with open(PAGE) as f:
            self.assertEqual(faultmatrix.render(), f.read(),
                             'run tools/fault_matrix.py')

    def test_every_operation_lists_its_calls_with_known_outcomes(self):
        for op in faultmatrix.OPERATIONS:
            self.assertTrue(op.calls, op.key)
            for position, outcome in op.calls:
                self.assertIn(outcome, faultmatrix.OUTCOMES, op.key)
