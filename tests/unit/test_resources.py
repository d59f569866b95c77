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

"""Flavors to container limits, and the host's inventory for placement."""

import os
import shutil

import fixtures
import nova.conf
from nova import objects
import os_resource_classes as orc
from oslo_config import fixture as config_fixture
import testtools

from nova_openvz import exception
from nova_openvz import resources
from nova_openvz import settings
from nova_openvz import vz4

CONF = nova.conf.CONF


def flavor(memory_mb=2048, vcpus=2, root_gb=20, swap=0, **specs):
    objects.register_all()
    return objects.Flavor(memory_mb=memory_mb, vcpus=vcpus, root_gb=root_gb,
                          swap=swap, extra_specs=specs)


def flavor_settings(flavor, swap_mb=None):
    """The ``vzctl set`` options a flavor's limits render to."""
    return [str(word) for option in vz4.set_options(
        [resources.limits(flavor, swap_mb)]) for word in option]


def options(args):
    """``vzctl set`` options as a dict; each option must appear once."""
    pairs = dict(zip(args[::2], args[1::2]))
    assert len(pairs) * 2 == len(args), args
    return pairs


class _Base(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.flags = self.useFixture(config_fixture.Config(CONF)).config


class TestFlavorSettings(_Base):

    def test_a_plain_flavor(self):
        self.assertEqual(
            ['--ram', '2048M', '--swap', '0M', '--cpus', '2',
             '--cpuunits', '2000'],
            flavor_settings(flavor()))

    def test_swap_in_megabytes(self):
        self.assertEqual('512M', options(flavor_settings(
            flavor(swap=512)))['--swap'])

    def test_cpuunits_follow_the_per_vcpu_option_up_to_the_maximum(self):
        self.flags(group='openvz', cpuunits_per_vcpu=300)
        self.assertEqual('1200', options(flavor_settings(
            flavor(vcpus=4)))['--cpuunits'])
        self.flags(group='openvz', cpuunits_per_vcpu=100000)
        self.assertEqual('500000', options(flavor_settings(
            flavor(vcpus=8)))['--cpuunits'])

    def test_quota_cpu_shares_sets_cpuunits(self):
        self.assertEqual('512', options(flavor_settings(
            flavor(**{'quota:cpu_shares': '512'})))['--cpuunits'])

    def test_openvz_cpuunits_wins_over_cpu_shares(self):
        self.assertEqual('3000', options(flavor_settings(
            flavor(**{'quota:cpu_shares': '512',
                      'openvz:cpuunits': '3000'})))['--cpuunits'])

    def test_cpu_shares_are_clamped_into_the_cpuunits_range(self):
        # Nova's API accepts any share from 0; vzctl takes 8..500000.
        for shares, units in (('0', '8'), ('4', '8'), ('900000', '500000')):
            self.assertEqual(units, options(flavor_settings(
                flavor(**{'quota:cpu_shares': shares})))['--cpuunits'])
        self.assertRaises(exception.InvalidFlavorLimit,
                          flavor_settings,
                          flavor(**{'quota:cpu_shares': 'many'}))
        self.assertRaises(exception.InvalidFlavorLimit,
                          flavor_settings,
                          flavor(**{'quota:cpu_shares': '-1'}))

    def test_no_cpulimit_unless_asked(self):
        self.assertNotIn('--cpulimit', flavor_settings(flavor()))

    def test_cpu_quota_is_per_vcpu_like_libvirt(self):
        # 50 ms in each 100 ms for each of 2 vCPUs: one full CPU.
        self.assertEqual('100', options(flavor_settings(
            flavor(vcpus=2, **{'quota:cpu_quota': '50000',
                               'quota:cpu_period': '100000'})))['--cpulimit'])
        # The default period is 100 ms; a fraction of a percent rounds up.
        self.assertEqual('26', options(flavor_settings(
            flavor(vcpus=1, **{'quota:cpu_quota': '25001'})))['--cpulimit'])
        self.assertEqual('75', options(flavor_settings(
            flavor(vcpus=3, **{'quota:cpu_quota': '5000',
                               'quota:cpu_period': '20000'})))['--cpulimit'])

    def test_a_quota_beyond_float_range_is_all_the_vcpus(self):
        # Nova's API accepts any integer; 100.0 * quota overflowed.
        self.assertEqual('200', options(flavor_settings(
            flavor(vcpus=2, **{'quota:cpu_quota': str(10 ** 309)})))[
                '--cpulimit'])

    def test_negative_cpu_quota_means_no_limit(self):
        self.assertEqual('0', options(flavor_settings(
            flavor(**{'quota:cpu_quota': '-1'})))['--cpulimit'])

    def test_cpu_period_zero_means_the_default_period(self):
        # Nova's API accepts quota:cpu_period=0 ("no value"); libvirt then
        # leaves the kernel's default period of 100 ms.
        self.assertEqual('100', options(flavor_settings(
            flavor(vcpus=1, **{'quota:cpu_quota': '100000',
                               'quota:cpu_period': '0'})))['--cpulimit'])

    def test_bad_cpu_quota_or_period_is_refused(self):
        for specs in ({'quota:cpu_quota': 'half'},
                      {'quota:cpu_quota': '5000', 'quota:cpu_period': '-5'},
                      {'quota:cpu_quota': '5000',
                       'quota:cpu_period': 'often'},
                      {'quota:cpu_quota': '5000',
                       'quota:cpu_period': '2000000'}):
            self.assertRaises(exception.InvalidFlavorLimit,
                              flavor_settings, flavor(**specs))

    def test_openvz_cpulimit_wins_over_cpu_quota(self):
        self.assertEqual('150', options(flavor_settings(
            flavor(**{'quota:cpu_quota': '50000',
                      'openvz:cpulimit': '150'})))['--cpulimit'])

    def test_openvz_limits_become_vzctl_options(self):
        args = options(flavor_settings(flavor(**{
            'openvz:ioprio': '6', 'openvz:iolimit': '20',
            'openvz:iopslimit': '300', 'openvz:numproc': '400',
            'openvz:numfile': '10000'})))
        self.assertEqual({'--ioprio': '6', '--iolimit': '20',
                          '--iopslimit': '300', '--numproc': '400',
                          '--numfile': '10000'},
                         {k: args[k] for k in ('--ioprio', '--iolimit',
                                               '--iopslimit', '--numproc',
                                               '--numfile')})

    def test_bad_openvz_values_are_refused_with_the_key(self):
        for key, raw in (('openvz:cpuunits', '5'), ('openvz:ioprio', '8'),
                         ('openvz:numproc', '0'), ('openvz:cpulimit', '-1'),
                         ('openvz:iolimit', 'fast')):
            error = self.assertRaises(exception.InvalidFlavorLimit,
                                      flavor_settings,
                                      flavor(**{key: raw}))
            self.assertIn(key, error.format_message())


class TestDiskQos(_Base):

    def test_the_smallest_bandwidth_and_iops_are_used(self):
        args = options(flavor_settings(flavor(**{
            'quota:disk_read_bytes_sec': '20971520',
            'quota:disk_write_bytes_sec': '10485760',
            'quota:disk_total_iops_sec': '500',
            'quota:disk_read_iops_sec': '800'})))
        self.assertEqual('10485760B', args['--iolimit'])
        self.assertEqual('500', args['--iopslimit'])

    def test_zero_means_no_limit(self):
        args = options(flavor_settings(flavor(**{
            'quota:disk_total_bytes_sec': '0',
            'quota:disk_write_bytes_sec': '4096'})))
        self.assertEqual('4096B', args['--iolimit'])
        self.assertNotIn('--iopslimit', args)

    def test_openvz_limits_win_over_nova_specs(self):
        args = options(flavor_settings(flavor(**{
            'openvz:iolimit': '5', 'quota:disk_total_bytes_sec': '100',
            'openvz:iopslimit': '7', 'quota:disk_total_iops_sec': '9'})))
        self.assertEqual('5', args['--iolimit'])
        self.assertEqual('7', args['--iopslimit'])

    def test_bad_values_are_refused_with_the_key(self):
        for value in ('-1', 'fast', '1.5'):
            error = self.assertRaises(
                exception.InvalidFlavorLimit, flavor_settings,
                flavor(**{'quota:disk_write_iops_sec': value}))
            self.assertIn('quota:disk_write_iops_sec', str(error))

    def test_a_swap_mapping_overrides_the_flavor_swap(self):
        args = options(flavor_settings(flavor(swap=512), 128))
        self.assertEqual('128M', args['--swap'])


class TestDisk(_Base):

    def test_root_gb_and_its_default(self):
        self.assertEqual(settings.Disk('ploop', 20),
                         resources.disk(flavor()))
        self.assertEqual(10, resources.disk(flavor(root_gb=0)).size_gb)
        self.flags(group='openvz', default_root_gb=3)
        self.assertEqual(3, resources.disk(flavor(root_gb=0)).size_gb)

    def test_layout_from_option_or_flavor(self):
        self.assertEqual('ploop', resources.layout(flavor()))
        self.flags(group='openvz', layout='simfs')
        self.assertEqual('simfs', resources.layout(flavor()))
        self.assertEqual('ploop', resources.layout(
            flavor(**{'openvz:layout': 'ploop'})))
        self.assertRaises(exception.InvalidFlavorLimit, resources.layout,
                          flavor(**{'openvz:layout': 'qcow2'}))

    def test_disk_gb_reports_the_filesystem(self):
        path = self.useFixture(fixtures.TempDir()).path
        total, free = resources.disk_gb(path)
        usage = shutil.disk_usage(path)
        self.assertEqual(usage.total // 1024 ** 3, total)
        # Free space may move a little between the two looks.
        self.assertLessEqual(abs(usage.free // 1024 ** 3 - free), 1)
        self.assertRaises(OSError, resources.disk_gb,
                          os.path.join(path, 'missing'))


class TestInventory(_Base):

    def test_inventory_of_the_three_classes(self):
        self.flags(reserved_host_cpus=1, reserved_host_memory_mb=1024)
        ratios = {orc.VCPU: 4.0, orc.MEMORY_MB: 1.5, orc.DISK_GB: 1.0}
        inventory = resources.inventory(16, 65536, 900, ratios, 20)
        self.assertEqual({
            orc.VCPU: {'total': 16, 'min_unit': 1, 'max_unit': 16,
                       'step_size': 1, 'allocation_ratio': 4.0,
                       'reserved': 1},
            orc.MEMORY_MB: {'total': 65536, 'min_unit': 1, 'max_unit': 65536,
                            'step_size': 1, 'allocation_ratio': 1.5,
                            'reserved': 1024},
            orc.DISK_GB: {'total': 900, 'min_unit': 1, 'max_unit': 900,
                          'step_size': 1, 'allocation_ratio': 1.0,
                          'reserved': 20},
        }, inventory)
