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

"""The DBaaS scenario's pieces that need no server: user data, pgbench log."""

import os
import shutil
import subprocess
from unittest import mock

import fixtures
import testtools

from nova_openvz.testing import dbaas


class TestUserData(testtools.TestCase):

    def test_a_posix_shell_script_with_the_names_in_it(self):
        script = dbaas.user_data('app', 'app_secret', 'appdb')
        self.assertTrue(script.startswith('#!/bin/sh\n'))
        self.assertIn("CREATE ROLE app LOGIN PASSWORD ''app_secret''",
                      script)
        self.assertIn('CREATE DATABASE appdb OWNER app', script)
        self.assertIn('DEVICE=/dev/vdb\n', script)
        path = os.path.join(self.useFixture(fixtures.TempDir()).path, 'ud')
        with open(path, 'w') as f:
            f.write(script)
        subprocess.run(['sh', '-n', path], check=True)
        if shutil.which('shellcheck'):
            proc = subprocess.run(['shellcheck', '-s', 'sh', path],
                                  capture_output=True, text=True)
            self.assertEqual(0, proc.returncode, proc.stdout)

    def test_names_that_would_need_quoting_are_refused(self):
        for bad in ("a'; DROP TABLE x; --", 'a b', 'a"b', ''):
            self.assertRaises(ValueError, dbaas.user_data, bad, 'pw', 'db')
            self.assertRaises(ValueError, dbaas.user_data, 'u', bad, 'db')
            self.assertRaises(ValueError, dbaas.user_data, 'u', 'pw', bad)


class TestCommitted(testtools.TestCase):

    def test_only_transactions_with_a_latency_count(self):
        log = ('0 1 7277 0 1796233884 514616\n'
               '1 1 11355 0 1796233884 518727\n'
               '0 2 failed 0 1796233884 526537\n'
               '1 2 3922 0 1796233884 522671\n'
               '\n')
        self.assertEqual({(0, 1), (1, 1), (1, 2)}, dbaas.committed(log))


class TestTemplateCache(testtools.TestCase):

    def test_a_cached_template_is_not_built_again(self):
        cache = self.useFixture(fixtures.TempDir()).path
        tarball = os.path.join(cache, dbaas.TEMPLATE + '.tar.gz')
        with open(tarball, 'wb') as f:
            f.write(b'cached')
        built = self.useFixture(fixtures.MockPatch(
            'vzsim.templates.build_postgresql_template')).mock
        self.useFixture(fixtures.EnvironmentVariable(dbaas.CACHE_ENV,
                                                     cache))
        self.assertEqual(tarball, dbaas.template())
        built.assert_not_called()

    def test_a_missing_template_is_built_into_the_cache(self):
        cache = os.path.join(self.useFixture(fixtures.TempDir()).path, 'c')
        built = self.useFixture(fixtures.MockPatch(
            'vzsim.templates.build_postgresql_template')).mock
        tarball = dbaas.template(cache)
        self.assertEqual(os.path.join(cache, dbaas.TEMPLATE + '.tar.gz'),
                         tarball)
        built.assert_called_once_with(
            tarball, mirror=dbaas.templates.DEBIAN_MIRROR, log=mock.ANY)
