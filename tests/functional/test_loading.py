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

"""nova-openvz loads through Nova's own loader from the installed package.

Nova imports only ``nova.virt.<compute_driver>``, so the package installs a
one-file shim, ``nova/virt/openvz/__init__.py``, into Nova's package.  That
only happens with a real (non-editable) install, which is how tox installs
the project; these tests check the installed result, not the source tree.
"""

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import sysconfig

import fixtures
from nova import test
from nova.virt import driver
from nova.virt import fake

from nova_openvz import driver as openvz_driver

SOURCE_ROOT = os.path.realpath(
    os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
# The packages' directories in the source tree (the tree may also hold the
# tox envs, so "inside SOURCE_ROOT" is no test).
SOURCE_DIRS = [os.path.join(SOURCE_ROOT, 'nova'),
               os.path.join(SOURCE_ROOT, 'nova_openvz')]
SHIM = 'nova/virt/openvz/__init__.py'
SHIM_PYC = re.compile(r'^nova/virt/openvz/__pycache__/__init__\.[^/]+\.pyc$')

# Runs in a fresh interpreter in isolated mode (-I: neither the current
# directory nor PYTHON* variables on the path), from an empty directory, so
# every module comes from the installed packages.
LOAD_SCRIPT = """
import json
import nova.virt.openvz
from nova.virt import driver
from nova.virt import fake
import nova_openvz.driver
drv = driver.load_compute_driver(fake.FakeVirtAPI(), 'openvz.OpenVZDriver')
print(json.dumps({
    'shim': nova.virt.openvz.__file__,
    'package': nova_openvz.driver.__file__,
    'class': '%s.%s' % (type(drv).__module__, type(drv).__name__),
}))
"""


def _inside(path, directory):
    path = os.path.realpath(path)
    directory = os.path.realpath(directory)
    return os.path.commonpath([path, directory]) == directory


def _from_source_tree(path):
    return any(_inside(path, d) for d in SOURCE_DIRS)


def _site_packages():
    paths = sysconfig.get_paths()
    return {paths['purelib'], paths['platlib']}


class TestLoading(test.NoDBTestCase):

    def _distribution(self):
        try:
            return importlib.metadata.distribution('nova-openvz')
        except importlib.metadata.PackageNotFoundError:
            self.fail('nova-openvz is not installed; run the tests through '
                      'tox, which installs it as a wheel')

    def test_shim_resolves_inside_novas_installed_package(self):
        import nova
        import nova.virt.openvz as shim

        self.assertTrue(
            any(_inside(shim.__file__, d) for d in _site_packages()),
            '%s is not in site-packages' % shim.__file__)
        self.assertFalse(_from_source_tree(shim.__file__),
                         '%s comes from the source tree' % shim.__file__)
        self.assertEqual(
            os.path.realpath(os.path.join(os.path.dirname(nova.__file__),
                                          'virt', 'openvz', '__init__.py')),
            os.path.realpath(shim.__file__))
        self.assertIs(openvz_driver.OpenVZDriver, shim.OpenVZDriver)
        self.assertEqual(['OpenVZDriver'], shim.__all__)

    def test_load_compute_driver_gives_an_openvz_driver(self):
        virtapi = fake.FakeVirtAPI()
        try:
            drv = driver.load_compute_driver(virtapi, 'openvz.OpenVZDriver')
        except SystemExit:
            self.fail("Nova's loader could not load openvz.OpenVZDriver "
                      "(it logs the reason and exits)")
        self.assertIsInstance(drv, openvz_driver.OpenVZDriver)
        self.assertIsInstance(drv, driver.ComputeDriver)
        self.assertIs(virtapi, drv.virtapi)

    def test_record_lists_nothing_else_under_nova(self):
        dist = self._distribution()
        files = [str(f) for f in dist.files or ()]
        under_nova = [f for f in files if f.startswith('nova/')]
        self.assertIn(SHIM, under_nova)
        others = [f for f in under_nova
                  if f != SHIM and not SHIM_PYC.match(f)]
        self.assertEqual([], others)
        self.assertNotIn('nova/__init__.py', files)
        self.assertNotIn('nova/virt/__init__.py', files)

    def test_install_is_not_editable(self):
        direct_url = self._distribution().read_text('direct_url.json')
        if direct_url:
            dir_info = json.loads(direct_url).get('dir_info', {})
            self.assertFalse(dir_info.get('editable', False),
                             'nova-openvz is an editable install')

    def test_fresh_interpreter_loads_everything_from_site_packages(self):
        tmp = self.useFixture(fixtures.TempDir()).path
        out = subprocess.run(
            [sys.executable, '-I', '-c', LOAD_SCRIPT], cwd=tmp,
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=120)
        self.assertEqual(0, out.returncode, out.stderr)
        loaded = json.loads(out.stdout.strip().splitlines()[-1])
        self.assertEqual('nova_openvz.driver.OpenVZDriver', loaded['class'])
        for key in ('shim', 'package'):
            self.assertTrue(
                any(_inside(loaded[key], d) for d in _site_packages()),
                '%s=%s is not in site-packages' % (key, loaded[key]))
            self.assertFalse(_from_source_tree(loaded[key]),
                             '%s=%s is in the source tree' % (key,
                                                              loaded[key]))
