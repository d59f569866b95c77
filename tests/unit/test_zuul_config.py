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

"""zuul.d/ passes tools/validate-zuul.py, and broken configuration fails.

The validator needs the ``zuul`` package, which the unit test environment
does not have (it conflicts with upper-constraints.txt). The tests run it
with the first Python that has it: this one, $NOVA_OPENVZ_ZUUL_PYTHON, or
the interpreter of ``tox -e zuul`` (.tox/zuul); else they are skipped.
"""

import os
import subprocess
import sys
import textwrap

import fixtures
import testtools

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
VALIDATOR = os.path.join(ROOT, 'tools', 'validate-zuul.py')


def _has_zuul(python):
    if not python or not os.access(python, os.X_OK):
        return False
    return subprocess.run([python, '-c', 'import zuul.configloader'],
                          capture_output=True, check=False).returncode == 0


def zuul_python():
    for python in (sys.executable,
                   os.environ.get('NOVA_OPENVZ_ZUUL_PYTHON'),
                   os.path.join(ROOT, '.tox', 'zuul', 'bin', 'python')):
        if _has_zuul(python):
            return python
    return None


_PYTHON = zuul_python()
SKIP = ('the zuul package is not importable here; run "tox -e zuul" (or '
        'set NOVA_OPENVZ_ZUUL_PYTHON to a Python that has it)')

BROKEN_JOB = textwrap.dedent('''\
    - job:
        name: nova-openvz-broken
        parent: devstack-tempest
        runn: playbooks/run.yaml
        voting: maybe
    ''')

BROKEN_NODESET = textwrap.dedent('''\
    - nodeset:
        name: nova-openvz-broken
        nodes:
          - name: controller
            label: ubuntu-noble
        groups:
          - name: tempest
            nodes:
              - compute1
    ''')


@testtools.skipIf(_PYTHON is None, SKIP)
class TestZuulConfig(testtools.TestCase):

    def validate(self, *args):
        proc = subprocess.run([_PYTHON, VALIDATOR] + list(args),
                              capture_output=True, text=True, check=False,
                              cwd=ROOT, timeout=120)
        return proc.returncode, proc.stdout + proc.stderr

    def write_dir(self, **files):
        directory = self.useFixture(fixtures.TempDir()).path
        for name, text in files.items():
            with open(os.path.join(directory, name), 'w') as f:
                f.write(text)
        return directory

    def test_project_config_is_valid(self):
        code, out = self.validate()
        self.assertEqual(0, code, out)
        self.assertIn('zuul.d/jobs.yaml: ', out)
        self.assertIn('zuul.d/project.yaml: ', out)
        self.assertIn(' 0 errors', out)

    def test_broken_job_is_rejected(self):
        code, out = self.validate('--dir', self.write_dir(
            **{'jobs.yaml': BROKEN_JOB}))
        self.assertEqual(1, code, out)
        self.assertIn("job nova-openvz-broken: extra keys not allowed "
                      "@ data['runn']", out)
        self.assertIn("expected bool for dictionary value @ data['voting']",
                      out)

    def test_zuul_parser_errors_are_reported(self):
        # Valid against the schema; Zuul's parser finds the bad group.
        code, out = self.validate('--dir', self.write_dir(
            **{'nodesets.yaml': BROKEN_NODESET}))
        self.assertEqual(1, code, out)
        self.assertIn('node named "compute1" which is', out)

    def test_duplicate_keys_and_unknown_names(self):
        directory = self.write_dir(**{
            'a.yaml': '- job:\n    name: x\n    name: y\n',
            'b.yaml': '- project:\n    chek:\n      jobs:\n        - nope\n',
        })
        code, out = self.validate('--dir', directory)
        self.assertEqual(1, code, out)
        self.assertIn('duplicate keys are not permitted', out)
        self.assertIn("unknown pipeline 'chek'", out)
        self.assertIn("unknown job 'nope'", out)
