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

"""tools/cloud: the parts that need no running cloud.

The cloud itself is exercised by ``tools/cloud.sh ci`` (CI's .ci/run and
the nova-openvz-cloud Zuul job).
"""

import configparser
import importlib.util
import ipaddress
import json
import os
import subprocess
import sys

import fixtures
import testtools

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


def _load(name):
    spec = importlib.util.spec_from_file_location(
        'cloud_' + name, os.path.join(ROOT, 'tools', 'cloud', name + '.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TestTempestFlags(testtools.TestCase):

    def test_flags_follow_the_support_matrix_like_the_plugin(self):
        tempest = _load('tempest')
        flags = tempest.feature_flags()
        matrix = configparser.ConfigParser()
        matrix.read(os.path.join(ROOT, 'doc', 'source', 'user',
                                 'support-matrix.ini'))
        features = subprocess.run(
            ['bash', '-c', 'source "$1"; echo $OPENVZ_TEMPEST_FEATURES',
             'x', os.path.join(ROOT, 'devstack', 'settings')],
            capture_output=True, text=True, check=True,
            env={'DEST': '/opt/stack', 'DATA_DIR': '/opt/stack/data'}
        ).stdout.split()
        self.assertGreater(len(features), 10)
        for entry in features:
            operation, flag = entry.split(':', 1)
            status = matrix['operation.' + operation]['driver.openvz']
            self.assertEqual(status in ('complete', 'partial'), flags[flag],
                             entry)
        for flag in ('vnc_console', 'stable_rescue'):
            self.assertFalse(flags[flag], flag)
        for flag in ('pause', 'suspend', 'rescue', 'shelve', 'personality'):
            self.assertTrue(flags[flag], flag)

    def test_tests_left_out_are_those_of_missing_operations(self):
        tempest = _load('tempest')
        matrix = configparser.ConfigParser()
        matrix.read(os.path.join(ROOT, 'doc', 'source', 'user',
                                 'support-matrix.ini'))
        for operation in tempest.MISSING:
            # Implementing one means its tests must run again.
            self.assertEqual('missing', matrix['operation.' + operation][
                'driver.openvz'], operation)
        excluded = '|'.join(tempest.left_out())
        base = 'tempest.api.compute.servers.'
        for test in ('test_create_server.ServersTestBootFromVolume.'
                     'test_list_servers[id-9a438d88]',
                     'test_server_actions.ServerActionsV293TestJSON.'
                     'test_rebuild_volume_backed_server[id-6652dab9]',
                     'test_server_actions.ServerActionsTestOtherA.'
                     'test_resize_volume_backed_server_confirm[id-e6c2]',
                     'test_device_tagging.TaggedAttachmentsTest.'
                     'test_tagged_attachment[id-3e41c782]'):
            self.assertRegex(base + test, excluded)
        for test in ('test_create_server.ServersTestJSON.'
                     'test_list_servers[id-9a438d88,smoke]',
                     'test_server_actions.ServerActionsTestOtherA.'
                     'test_rebuild_server_with_volume_attached[id-b68bd]',
                     'test_server_actions.ServerActionsTestOtherA.'
                     'test_resize_server_confirm[id-1499262a]'):
            self.assertNotRegex(base + test, excluded)

    def test_floating_ip_validation_leaves_out_the_password_test(self):
        # Tempest's password test takes its class's floating IP away.
        tempest = _load('tempest')
        test = ('tempest.api.compute.servers.test_server_actions.'
                'ServerActionsTestJSON.test_change_server_password'
                '[id-6158df09]')
        self.assertNotRegex(test, '|'.join(tempest.left_out()))
        self.assertRegex(test, '|'.join(tempest.left_out(floating_ips=True)))

    def test_unknown_operation_is_an_error(self):
        tempest = _load('tempest')
        path = self.useFixture(fixtures.TempDir()).join('m.ini')
        with open(path, 'w') as f:
            f.write('[operation.pause]\ndriver.openvz=missing\n')
        self.assertRaises(SystemExit, tempest.feature_flags, path)


class TestCloudScript(testtools.TestCase):

    def test_usage_and_root_check(self):
        proc = subprocess.run([sys.executable,
                               os.path.join(ROOT, 'tools', 'cloud',
                                            'cloud.py'), '--help'],
                              capture_output=True, text=True, check=False)
        self.assertEqual(0, proc.returncode, proc.stderr)
        for action in ('up', 'down', 'status', 'env'):
            self.assertIn(action, proc.stdout)

    def test_shipped_filters_adapt_to_the_cloud_directory_only(self):
        cloud = _load('cloud')
        work = self.useFixture(fixtures.TempDir()).path
        c = cloud.Cloud(work)
        os.makedirs(c.etc)
        c.write_rootwrap()
        with open(os.path.join(ROOT, 'etc', 'nova', 'rootwrap.d',
                               'openvz.filters')) as f:
            shipped = f.read()
        with open(os.path.join(c.etc, 'nova', 'rootwrap.d',
                               'openvz.filters')) as f:
            copied = f.read()
        self.assertEqual(shipped.replace('/etc/(?!', c.etc + '/(?!'),
                         copied)
        self.assertNotEqual(shipped, copied)


class TestComputeHosts(testtools.TestCase):

    def test_each_host_has_its_own_of_what_two_real_hosts_would(self):
        # Both run on one machine: a shared name, directory, bridge, port
        # or CT ID range would make them step on each other.
        cloud = _load('cloud')
        c = cloud.Cloud(self.useFixture(fixtures.TempDir()).path)
        first, second = c.hosts
        for attr in ('name', 'address', 'root', 'state_path', 'lock_path',
                     'cpu_conf', 'agent_conf', 'compute', 'agent',
                     'int_bridge', 'tun_bridge', 'openflow_port',
                     'first_ctid'):
            self.assertNotEqual(getattr(first, attr), getattr(second, attr),
                                attr)
        # The first host keeps the names of a one-host cloud.
        self.assertEqual(('openvz-host', 'br-int', 'nova-compute'),
                         (first.name, first.int_bridge, first.compute))
        self.assertGreater(second.first_ctid - first.first_ctid, 10000)


class TestPublicRange(testtools.TestCase):

    def _routed(self):
        routes = json.loads(subprocess.run(
            ['ip', '-j', 'route', 'show'], capture_output=True, text=True,
            check=True).stdout)
        return [ipaddress.ip_network(r['dst'], strict=False)
                for r in routes if r.get('dst') != 'default']

    def test_routers_refuse_a_public_range_this_machine_routes(self):
        # A sandbox's package mirror may sit in a documentation range:
        # holding the public gateway there would cut the machine off.
        routed = self._routed()
        if not routed:
            self.skipTest('this machine has no route but the default')
        cloud = _load('cloud')
        cloud.PUBLIC_CIDR = str(routed[0])
        self.assertRaises(SystemExit, cloud.Cloud.check_public_range_is_free)

    def test_routers_take_a_range_nothing_here_routes(self):
        routed = self._routed()
        free = next(c for c in ('172.24.4.0/24', '198.18.0.0/24',
                                '100.64.0.0/24', '10.254.254.0/24')
                    if not any(r.overlaps(ipaddress.ip_network(c))
                               for r in routed))
        cloud = _load('cloud')
        cloud.PUBLIC_CIDR = free
        cloud.Cloud.check_public_range_is_free()


class TestTempestConfig(testtools.TestCase):

    def _config(self, **ids):
        tempest = _load('tempest')
        work = self.useFixture(fixtures.TempDir()).path
        with open(os.path.join(work, 'clouds.yaml'), 'w') as f:
            f.write('{"clouds": {"nova-openvz": {"auth": {"username": "a", '
                    '"password": "p", "project_name": "admin", '
                    '"auth_url": "http://127.0.0.1:25000/v3"}}}}')
        with open(os.path.join(work, 'tempest-ids.json'), 'w') as f:
            f.write(json.dumps(dict({'image': 'i', 'image_alt': 'j',
                                     'flavor': '42', 'flavor_alt': '84'},
                                    **ids)))
        path = os.path.join(work, 'tempest.conf')
        tempest.write_config(work, path)
        conf = configparser.ConfigParser()
        conf.read(path)
        return conf

    def test_two_compute_hosts_let_the_multinode_tests_run(self):
        conf = self._config(compute_hosts=['openvz-host', 'openvz-host2'],
                            scheduler_filters=['ComputeFilter',
                                               'DifferentHostFilter'])
        self.assertEqual('2', conf['compute']['min_compute_nodes'])
        self.assertEqual(
            'ComputeFilter,DifferentHostFilter',
            conf['compute-feature-enabled']['scheduler_enabled_filters'])
        for flag in ('cold_migration', 'live_migration', 'resize'):
            self.assertEqual('True', conf['compute-feature-enabled'][flag])

    def test_a_cloud_that_names_no_hosts_has_one(self):
        conf = self._config()
        self.assertEqual('1', conf['compute']['min_compute_nodes'])
        self.assertNotIn('scheduler_enabled_filters',
                         conf['compute-feature-enabled'])

    def test_validation_when_this_machine_reaches_every_server(self):
        conf = self._config(compute_hosts=['openvz-host'],
                            reachable_hosts=['openvz-host'],
                            ssh_user='debian')
        validation = conf['validation']
        self.assertEqual('True', validation['run_validation'])
        self.assertEqual(('fixed', 'private', 'debian', 'keypair'), (
            validation['connect_method'], validation['network_for_ssh'],
            validation['image_ssh_user'], validation['auth_method']))

    def test_routers_give_each_project_a_network_reached_by_floating_ip(self):
        # Tempest's fixed-IP interface tests run only on a network the
        # test project owns; with routers that route, Tempest makes one
        # per project and logs in through a floating IP.
        conf = self._config(compute_hosts=['openvz-host'],
                            reachable_hosts=['openvz-host'],
                            ssh_user='debian', routers=True)
        self.assertEqual(('True', 'True', 'floating'), (
            conf['auth']['create_isolated_networks'],
            conf['validation']['run_validation'],
            conf['validation']['connect_method']))
        conf = self._config(compute_hosts=['openvz-host'],
                            reachable_hosts=['openvz-host'],
                            ssh_user='debian')
        self.assertEqual(('False', 'fixed'), (
            conf['auth']['create_isolated_networks'],
            conf['validation']['connect_method']))

    def test_no_validation_without_ssh_or_with_an_unreachable_host(self):
        for ids in ({'compute_hosts': ['openvz-host'],
                     'reachable_hosts': ['openvz-host'], 'ssh_user': None},
                    {'compute_hosts': ['openvz-host', 'openvz-host2'],
                     'reachable_hosts': ['openvz-host'],
                     'ssh_user': 'debian'}):
            conf = self._config(**ids)
            self.assertEqual('False', conf['validation']['run_validation'])

    def test_the_cloud_s_public_network_is_tempest_s(self):
        conf = self._config(public_network='f00d')
        self.assertEqual('f00d', conf['network']['public_network_id'])
        self.assertEqual('public', conf['network']['floating_network_name'])
