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

"""The simulated vzctl, run as the real wrapper executable.

Each test asserts a behaviour of vzctl 4.x as openvz-reference.md
(sections 1, 2, 4 and 9) describes it: messages and their streams, exit
codes, the order of checks and how configs are rewritten.
"""

import json
import os
import subprocess
import sys

import testtools

from nova_openvz.privsep import vzconf
from tests import fixtures as sim_fixtures

CTID = 101


class VzctlTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        # The contract as the modelled backend keeps it: the minimal
        # template has no shell, so its init only "runs" there.
        self.host = self.useFixture(
            sim_fixtures.SimulatedHostFixture(kernel='modelled'))
        self.root = self.host.root

    def vzctl(self, *args, expect=0):
        """Run vzctl; assert the exit code; return ``(stdout, stderr)``."""
        rc, out, err = self.host.vzctl(*args)
        self.assertEqual(expect, rc, 'vzctl %s exited %s\nstdout: %s\n'
                         'stderr: %s' % (' '.join(map(str, args)), rc, out,
                                         err))
        return out, err

    def path(self, relative):
        return self.host.path(relative)

    def status(self, ctid=CTID):
        return self.vzctl('status', ctid)[0]

    def create(self, *args, ctid=CTID, layout='simfs', expect=0):
        return self.vzctl('create', ctid, '--layout', layout, *args,
                          expect=expect)

    def veinfo(self):
        with open(self.path('proc/vz/veinfo')) as f:
            return f.read()


class TestInvocation(VzctlTestCase):
    """Reference 1.1: global flags, command and CTID checks."""

    def test_no_arguments_prints_usage_to_stderr_and_exits_20(self):
        out, err = self.vzctl(expect=20)
        self.assertEqual('', out)
        self.assertTrue(err.startswith('vzctl version 4.11.1\n'))

    def test_version_and_help(self):
        self.assertEqual('vzctl version 4.11.1\n',
                         self.vzctl('--version')[0])
        out, err = self.vzctl('--help')
        self.assertTrue(out.startswith('vzctl version 4.11.1\n'))
        self.assertEqual('', err)

    def test_bad_command_missing_and_bad_ctid(self):
        self.assertEqual('Bad command: frob\n',
                         self.vzctl('frob', CTID, expect=20)[1])
        self.assertEqual('CT ID missing\n', self.vzctl('start', expect=21)[1])
        self.assertEqual('Bad CT ID nosuch\n',
                         self.vzctl('start', 'nosuch', expect=21)[1])
        self.assertEqual('Bad CT ID 2147483645\n',
                         self.vzctl('start', '2147483645', expect=21)[1])

    def test_only_set_is_allowed_for_ct0(self):
        self.assertEqual('Only set actions are allowed for CT0\n',
                         self.vzctl('start', 0, expect=21)[1])

    def test_missing_config_is_14_and_quiet_silences_it(self):
        out, err = self.vzctl('start', CTID, expect=14)
        self.assertEqual(('', 'Container config file does not exist\n'),
                         (out, err))
        self.assertEqual(('', ''), self.vzctl('--quiet', 'destroy', CTID,
                                              expect=14))

    def test_missing_global_config_is_10(self):
        os.unlink(self.path('etc/vz/vz.conf'))
        self.vzctl('start', CTID, expect=10)

    def test_status_of_a_missing_container(self):
        self.assertEqual('CTID 999 deleted unmounted down\n',
                         self.status(999))

    def test_start_rejects_stop_options_and_extra_arguments(self):
        self.create()
        err = self.vzctl('start', CTID, '--fast', expect=20)[1]
        self.assertEqual('Option --fast is not applicable to start command\n',
                         err)
        self.vzctl('start', CTID, '--bogus', expect=20)
        self.vzctl('start', CTID, 'extra', expect=20)


class TestCreate(VzctlTestCase):
    """Reference 1.2 and 4.8."""

    def test_ploop_create_with_the_default_sample(self):
        out, err = self.vzctl('create', CTID)
        private = self.path('vz/private/%d' % CTID)
        self.assertEqual(
            'Creating image: %s.tmp/root.hdd/root.hdd size=2306867K\n'
            'Creating container private area (centos-6-x86)\n'
            'Performing postcreate actions\n'
            'CT configuration saved to %s\n'
            'Container private area was created\n'
            % (private, self.host.conf_path(CTID)), out)
        self.assertEqual('', err)
        conf = self.host.ct_conf(CTID)
        self.assertEqual(self.path('vz/private/$VEID'), conf['VE_PRIVATE'])
        self.assertEqual(self.path('vz/root/$VEID'), conf['VE_ROOT'])
        self.assertEqual('centos-6-x86', conf['OSTEMPLATE'])
        self.assertEqual('vswap-256m', conf['ORIGIN_SAMPLE'])
        self.assertEqual('ploop', conf['VE_LAYOUT'])
        self.assertEqual('0:256M', conf['PHYSPAGES'])   # the sample's text
        image_dir = os.path.join(private, 'root.hdd')
        self.assertEqual(0o700, os.stat(image_dir).st_mode & 0o777)
        self.assertTrue(os.path.isfile(
            os.path.join(image_dir, 'DiskDescriptor.xml')))
        image = os.stat(os.path.join(image_dir, 'root.hdd'))
        # the hard limit, 2306867K, rounded up to whole 1 MiB clusters
        self.assertEqual(2307072 * 1024, image.st_size)
        self.assertLess(image.st_blocks * 512, image.st_size)   # sparse
        self.assertFalse(os.path.exists(private + '.tmp'))
        self.assertEqual('CTID 101 exist unmounted down\n', self.status())

    def test_simfs_create_saves_the_command_line_values(self):
        self.create('--ipadd', '10.0.0.1', '--ipadd', '10.0.0.2',
                    '--hostname', 'ct.example.com', '--name', 'web',
                    '--description', '{"uuid": "abc"}', '--config', 'basic')
        conf = self.host.ct_conf(CTID)
        self.assertEqual('10.0.0.1 10.0.0.2', conf['IP_ADDRESS'])
        self.assertEqual('ct.example.com', conf['HOSTNAME'])
        self.assertEqual('web', conf['NAME'])
        self.assertEqual('{"uuid": "abc"}', conf['DESCRIPTION'])
        self.assertEqual('basic', conf['ORIGIN_SAMPLE'])
        self.assertEqual('simfs', conf['VE_LAYOUT'])
        self.assertTrue(os.path.isfile(self.path('vz/private/101/sbin/init')))
        self.assertEqual('../conf/101.conf',
                         os.readlink(self.path('etc/vz/names/web')))
        # the name now works as the CT argument
        self.assertEqual('CTID 101 exist unmounted down\n',
                         self.vzctl('status', 'web')[0])

    def test_missing_template_is_91_and_leaves_nothing(self):
        out, err = self.create('--ostemplate', 'nosuch', expect=91)
        self.assertEqual(
            'Cached OS template %s/cache/nosuch.tar[.gz|.bz2|.xz] not found\n'
            'Creation of container private area failed\n'
            % self.path('vz/template'), err)
        self.assertFalse(os.path.exists(self.host.conf_path(CTID)))
        self.assertEqual([], os.listdir(self.path('vz/private')))

    def test_empty_ostemplate_is_kept_and_is_91(self):
        # vzctl 4.11 keeps --ostemplate '' rather than falling back to
        # DEF_OSTEMPLATE (whose template is in this host's cache).
        err = self.create('--ostemplate', '', expect=91)[1]
        self.assertEqual(
            'Cached OS template %s/cache/.tar[.gz|.bz2|.xz] not found\n'
            'Creation of container private area failed\n'
            % self.path('vz/template'), err)
        self.assertFalse(os.path.exists(self.host.conf_path(CTID)))

    def test_template_extensions_are_searched(self):
        self.host.add_template('plain-1', ext='')
        self.create('--ostemplate', 'plain-1')
        self.assertEqual('plain-1', self.host.ct_conf(CTID)['OSTEMPLATE'])

    def test_no_ostemplate_anywhere_is_29(self):
        vzconf.update(self.path('etc/vz/vz.conf'), {},
                      remove={'DEF_OSTEMPLATE'})
        err = self.create(expect=29)[1]
        self.assertIn('OS template is not specified\n', err)

    def test_existing_private_area_is_44(self):
        os.makedirs(self.path('vz/private/101/etc'))
        err = self.create(expect=44)[1]
        self.assertEqual('Private area already exists in %s\n'
                         'Creation of container private area failed\n'
                         % self.path('vz/private/101'), err)

    def test_ploop_without_diskspace_is_63(self):
        with open(self.path('etc/vz/conf/ve-nodisk.conf-sample'), 'w') as f:
            f.write('PHYSPAGES="0:256M"\nSWAPPAGES="0:512M"\n')
        err = self.vzctl('create', CTID, '--config', 'nodisk',
                         expect=63)[1]
        self.assertIn('Error: diskspace not set (required for ploop)\n', err)
        self.assertFalse(os.path.exists(self.host.conf_path(CTID)))

    def test_config_sample_errors_are_82(self):
        self.create('--config', 'nosuch', expect=82)
        self.create()
        err = self.vzctl('create', CTID, '--config', 'basic', expect=82)[1]
        self.assertIn('already exists, can not use --config option', err)

    def test_broken_tarball_is_48_and_the_tmp_area_is_cleaned(self):
        with open(self.path('vz/template/cache/broken.tar.gz'), 'wb') as f:
            f.write(b'\x1f\x8b\x08\x00garbage')
        err = self.create('--ostemplate', 'broken', expect=48)[1]
        self.assertTrue(err.startswith('tar: '))
        self.assertTrue(err.endswith(
            'Creation of container private area failed\n'))
        self.assertEqual([], os.listdir(self.path('vz/private')))

    def test_tarball_escaping_the_private_area_is_refused(self):
        sim_fixtures.build_template(
            self.path('vz/template/cache/evil.tar.gz'),
            extra={'../../escaped': b'x'})
        self.create('--ostemplate', 'evil', expect=48)
        self.assertFalse(os.path.exists(self.path('vz/escaped')))

    def test_unknown_option_and_bad_value_are_21(self):
        err = self.create('--bogus', 'x', expect=21)[1]
        self.assertEqual("vzctl: unrecognized option '--bogus'\n", err)
        err = self.create('--ipadd', '10.0.0.300', expect=21)[1]
        self.assertIn('Bad parameter for --ipadd: 10.0.0.300\n', err)


class TestLifecycle(VzctlTestCase):
    """Reference 1.3-1.6: start, stop, restart, status, mount, destroy."""

    def setUp(self):
        super().setUp()
        self.create('--ipadd', '10.0.0.5')

    def test_start_status_stop(self):
        out, err = self.vzctl('start', CTID)
        self.assertEqual('Starting container...\n'
                         'Container is mounted\n'
                         'Adding IP address(es): 10.0.0.5\n'
                         'Setting CPU units: 1000\n'
                         'Container start in progress...\n', out)
        self.assertEqual('', err)   # dists/centos.conf matches the template
        with open(self.path('var/log/vzctl.log')) as f:
            self.assertRegex(f.read(), r'\n\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d'
                             r'[+-]\d{4} vzctl : CT 101 : Starting '
                             r'container\.\.\.\n')
        self.assertEqual('CTID 101 exist mounted running\n', self.status())
        self.assertIn('       101     0     1        10.0.0.5\n',
                      self.veinfo())
        self.assertEqual('Container is already running\n',
                         self.vzctl('start', CTID, expect=32)[1])

        out, err = self.vzctl('stop', CTID)
        self.assertEqual('Stopping container ...\n'
                         'Container was stopped\n'
                         'Container is unmounted\n', out)
        self.assertEqual('CTID 101 exist unmounted down\n', self.status())
        self.assertNotIn('       101 ', self.veinfo())
        # stopping a stopped container is not an error
        self.assertEqual(('', 'Unable to stop: container is not running\n'),
                         self.vzctl('stop', CTID))

    def test_start_wait_and_restart(self):
        out = self.vzctl('start', CTID, '--wait')[0]
        self.assertTrue(out.endswith('Container start in progress, waiting '
                                     '...\nContainer started successfully\n'))
        out = self.vzctl('restart', CTID)[0]
        self.assertTrue(out.startswith('Restarting container\nStopping '
                                       'container ...\n'))
        self.assertEqual('CTID 101 exist mounted running\n', self.status())

    def test_restart_of_a_stopped_container_is_a_start(self):
        out = self.vzctl('restart', CTID)[0]
        self.assertTrue(out.startswith('Restarting container\nStarting '
                                       'container...\n'))

    def test_start_precedence_disabled_private_running(self):
        self.vzctl('set', CTID, '--disabled', 'yes', '--save')
        self.assertEqual('Container start disabled\n',
                         self.vzctl('start', CTID, expect=105)[1])
        os.rename(self.path('vz/private/101'), self.path('vz/private/x'))
        self.vzctl('start', CTID, expect=105)   # disabled is checked first
        self.vzctl('start', CTID, '--force', expect=43)
        os.rename(self.path('vz/private/x'), self.path('vz/private/101'))
        self.vzctl('start', CTID, '--force')

    def test_missing_swap_in_vswap_config_is_28(self):
        vzconf.update(self.host.conf_path(CTID), {}, remove={'SWAPPAGES'})
        err = self.vzctl('start', CTID, expect=28)[1]
        self.assertEqual('Error: required UB parameter swappages not set\n',
                         err)

    def test_mount_and_umount(self):
        self.assertEqual('Container is mounted\n', self.vzctl('mount',
                                                              CTID)[0])
        self.assertEqual(('', 'Container is already mounted\n'),
                         self.vzctl('mount', CTID))
        # VE_ROOT shows the container's files while mounted
        self.assertTrue(os.path.isfile(self.path('vz/root/101/sbin/init')))
        self.assertEqual('Container is unmounted\n',
                         self.vzctl('umount', CTID)[0])
        self.assertEqual([], os.listdir(self.path('vz/root/101')))
        self.assertEqual('CT is not mounted\n',
                         self.vzctl('umount', CTID, expect=40)[1])
        self.vzctl('start', CTID)
        self.assertEqual('Container is running -- stop it first\n',
                         self.vzctl('umount', CTID, expect=32)[1])

    def test_destroy(self):
        self.vzctl('set', CTID, '--name', 'web', '--save')
        with open(self.path('etc/vz/conf/101.mount'), 'w') as f:
            f.write('#!/bin/sh\n')
        self.vzctl('start', CTID)
        out = self.vzctl('destroy', CTID, expect=32)[0]
        self.assertEqual('Container is currently running. Stop it first.\n',
                         out)
        self.vzctl('stop', CTID, '--skip-umount')
        self.assertEqual('Container is currently mounted (umount first)\n',
                         self.vzctl('destroy', CTID, expect=41)[1])
        self.vzctl('umount', CTID)
        out = self.vzctl('delete', CTID)[0]
        self.assertEqual('Destroying container private area: %s\n'
                         'Container private area was destroyed\n'
                         % self.path('vz/private/101'), out)
        conf_dir = os.listdir(self.path('etc/vz/conf'))
        self.assertIn('101.conf.destroyed', conf_dir)
        self.assertIn('101.mount.destroyed', conf_dir)
        self.assertNotIn('101.conf', conf_dir)
        for gone in ('vz/private/101', 'vz/root/101', 'etc/vz/names/web'):
            self.assertFalse(os.path.lexists(self.path(gone)), gone)
        self.assertEqual('CTID 101 deleted unmounted down\n', self.status())
        self.vzctl('start', CTID, expect=14)

    def test_config_without_private_area_is_deleted_and_43(self):
        os.rename(self.path('vz/private/101'), self.path('vz/private/x'))
        self.assertEqual('CTID 101 deleted unmounted down\n', self.status())
        err = self.vzctl('mount', CTID, expect=43)[1]
        self.assertEqual('Container private area %s does not exist\n'
                         % self.path('vz/private/101'), err)


class TestActionScripts(VzctlTestCase):
    """Reference 1.5 and 4: host-side action scripts at mount time."""

    def setUp(self):
        super().setUp()
        self.create()

    def script(self, name, text):
        path = self.path('etc/vz/conf/' + name)
        with open(path, 'w') as f:
            f.write('#!/bin/sh\n' + text)
        os.chmod(path, 0o755)

    def test_mount_scripts_run_with_veid_and_conffile(self):
        record = self.path('script-env')
        for name in ('vps.mount', '%d.mount' % CTID):
            self.script(name, 'echo "%s $VEID $VE_CONFFILE" >> %s\n'
                        % (name, record))
        self.vzctl('start', CTID)
        with open(record) as f:
            self.assertEqual(['%s %d %s' % (name, CTID,
                                            self.host.conf_path(CTID))
                              for name in ('vps.mount', '%d.mount' % CTID)],
                             f.read().splitlines())

    def test_failing_mount_script_unmounts_and_exits_79(self):
        self.script('%d.mount' % CTID, 'exit 1\n')
        _, err = self.vzctl('mount', CTID, expect=79)
        self.assertIn('%d.mount' % CTID, err)
        self.assertEqual('CTID 101 exist unmounted down\n', self.status())


class TestSet(VzctlTestCase):
    """Reference 1.7, 4.4 and 4.5."""

    def setUp(self):
        super().setUp()
        self.create()

    def test_save_rewrites_in_place_and_appends_new_keys(self):
        before = self.host.conf_text(CTID).splitlines()
        out = self.vzctl('set', CTID, '--ram', '1G', '--numproc', '240:240',
                         '--kmemsize', 'unlimited', '--save')[0]
        self.assertEqual('CT configuration saved to %s\n'
                         % self.host.conf_path(CTID), out)
        after = self.host.conf_text(CTID).splitlines()
        index = before.index('PHYSPAGES="0:256M"')
        self.assertEqual('PHYSPAGES="0:262144"', after[index])
        self.assertEqual(before[:index], after[:index])
        self.assertEqual(['NUMPROC="240"', 'KMEMSIZE="unlimited"'],
                         after[len(before):])

    def test_unit_formats(self):
        self.vzctl('set', CTID, '--swap', '512M', '--privvmpages', '1G:2G',
                   '--diskspace', '2G:2.2G', '--diskinodes', '200000:220000',
                   '--cpulimit', '50', '--iolimit', '10', '--save')
        conf = self.host.ct_conf(CTID)
        self.assertEqual('0:131072', conf['SWAPPAGES'])
        self.assertEqual('262144:524288', conf['PRIVVMPAGES'])
        self.assertEqual('2097152:2306867', conf['DISKSPACE'])
        self.assertEqual('200000:220000', conf['DISKINODES'])
        self.assertEqual('50', conf['CPULIMIT'])
        self.assertEqual(str(10 * 1024 * 1024), conf['IOLIMIT'])

    def test_no_change_is_not_saved(self):
        self.vzctl('set', CTID, '--cpuunits', '1000', '--save')
        self.assertEqual('No changes in CT configuration, not saving\n',
                         self.vzctl('set', CTID, '--cpuunits', '1000',
                                    '--save')[0])

    def test_bad_values_and_options_are_21(self):
        for args, message in (
                (('--cpuunits', '7'), 'Bad parameter for --cpuunits: 7\n'),
                (('--cpuunits', '500001'),
                 'Bad parameter for --cpuunits: 500001\n'),
                (('--numproc', '10K'), 'Bad parameter for --numproc: 10K\n'),
                (('--onboot', 'maybe'), 'Bad parameter for --onboot: maybe\n'),
                (('--bogus', '1'), "vzctl: unrecognized option '--bogus'\n")):
            err = self.vzctl('set', CTID, *args, '--save', expect=21)[1]
            self.assertEqual(message, err)
        self.vzctl('set', CTID, '--cpuunits', '8', '--save')

    def test_live_parameters_on_a_stopped_container_need_save(self):
        out, err = self.vzctl('set', CTID, '--ram', '1G', expect=31)
        self.assertEqual('Unable to apply UBC parameters: container is not '
                         'running\n', err)
        self.assertEqual('0:256M', self.host.ct_conf(CTID)['PHYSPAGES'])
        self.assertEqual('Unable to apply network parameters: container is '
                         'not running\n',
                         self.vzctl('set', CTID, '--ipadd', '10.0.0.9',
                                    expect=31)[1])

    def test_guest_and_config_parameters_without_save(self):
        out, err = self.vzctl('set', CTID, '--hostname', 'h')
        self.assertEqual('Unable to configure container: not running\n', err)
        self.assertEqual('WARNING: Settings were not saved to config (use '
                         '--save flag)\n', out)
        out, err = self.vzctl('set', CTID, '--onboot', 'yes')
        self.assertEqual(('WARNING: Settings were not saved to config (use '
                          '--save flag)\n', ''), (out, err))
        self.assertNotIn('ONBOOT', self.host.ct_conf(CTID))

    def test_options_that_require_save(self):
        err = self.vzctl('set', CTID, '--name', 'web', expect=131)[1]
        self.assertEqual('Error: unable to use --name option without '
                         '--save\n', err)
        self.vzctl('set', CTID, '--ostemplate', 'debian', expect=20)
        self.vzctl('set', CTID, '--stop-timeout', '10', expect=20)
        self.vzctl('set', CTID, '--setmode', 'restart', '--ram', '1G',
                   expect=20)

    def test_name_assignment_and_conflict(self):
        out = self.vzctl('set', CTID, '--name', 'web', '--save')[0]
        self.assertIn('Name web assigned\n', out)
        self.assertEqual('../conf/101.conf',
                         os.readlink(self.path('etc/vz/names/web')))
        self.create(ctid=102)
        err = self.vzctl('set', 102, '--name', 'web', '--save',
                         expect=131)[1]
        self.assertEqual('Conflict: name web already used by container 101\n',
                         err)
        self.assertNotIn('NAME', self.host.ct_conf(102))

    def test_description_with_quotes_survives(self):
        description = '{"host": "h1", "uuid": "5b8c"}'
        self.vzctl('set', CTID, '--description', description, '--save')
        self.assertIn('DESCRIPTION="%s"' % description,
                      self.host.conf_text(CTID))
        self.assertEqual(description, self.host.ct_conf(CTID)['DESCRIPTION'])

    def test_set_save_without_config_creates_it(self):
        out, err = self.vzctl('set', 200, '--onboot', 'yes', '--save')
        path = self.host.conf_path(200)
        self.assertEqual('WARNING: %s not found\n' % path, err)
        self.assertEqual('ONBOOT="yes"\n', self.host.conf_text(200))
        self.assertEqual('CTID 200 deleted unmounted down\n',
                         self.status(200))

    def test_netif_add_generates_names_and_macs(self):
        self.vzctl('set', CTID, '--netif_add', 'eth0,,,,br0', '--save')
        netif = self.host.ct_conf(CTID)['NETIF']
        fields = dict(item.split('=') for item in netif.split(','))
        self.assertEqual(['ifname', 'bridge', 'mac', 'host_ifname',
                          'host_mac'],
                         [item.split('=')[0] for item in netif.split(',')])
        self.assertEqual('veth101.0', fields['host_ifname'])
        self.assertEqual('br0', fields['bridge'])
        for mac in (fields['mac'], fields['host_mac']):
            self.assertRegex(mac, r'^00:18:51(:[0-9A-F]{2}){3}$')
        err = self.vzctl('set', CTID, '--netif_add', 'eth1,00:11', '--save',
                         expect=21)[1]
        self.assertEqual('Invalid container MAC address length\n', err)
        self.vzctl('set', CTID, '--netif_del', 'eth0', '--save')
        self.assertEqual('', self.host.ct_conf(CTID)['NETIF'])

    def test_devices_capabilities_features(self):
        self.vzctl('set', CTID, '--devices', 'b:8:32:rw', '--devices',
                   'b:8:33:rw', '--capability', 'net_admin:on,SYS_TIME:on',
                   '--features', 'nfs:on', '--save')
        conf = self.host.ct_conf(CTID)
        self.assertEqual('b:8:32:rw b:8:33:rw', conf['DEVICES'])
        self.assertEqual('NET_ADMIN:on SYS_TIME:on', conf['CAPABILITY'])
        self.assertEqual('nfs:on', conf['FEATURES'])
        self.vzctl('set', CTID, '--devices', 'b:8:32:none', '--save')
        self.assertEqual('b:8:33:rw', self.host.ct_conf(CTID)['DEVICES'])
        self.vzctl('set', CTID, '--devices', 'b:7:0:rw', '--save', expect=86)

    def test_applyconfig(self):
        self.vzctl('set', CTID, '--hostname', 'keep', '--save')
        self.vzctl('set', CTID, '--applyconfig', 'basic', '--save')
        conf = self.host.ct_conf(CTID)
        self.assertEqual('240:240', conf['NUMPROC'])
        self.assertEqual('keep', conf['HOSTNAME'])
        self.vzctl('set', CTID, '--applyconfig', 'nosuch', '--save',
                   expect=109)

    def test_running_container_applies_live(self):
        self.vzctl('start', CTID)
        out = self.vzctl('set', CTID, '--ipadd', '10.0.0.7', '--cpuunits',
                         '2000', '--ram', '512M', '--hostname', 'ct7',
                         '--save')[0]
        self.assertIn('Adding IP address(es): 10.0.0.7\n', out)
        self.assertIn('Setting CPU units: 2000\n', out)
        self.assertIn('        10.0.0.7', self.veinfo())
        with open(self.path('proc/user_beancounters')) as f:
            counters = f.read()
        self.assertRegex(counters, r'\n +physpages +\d+ +\d+ +0 +131072 +0\n')
        with open(self.path('vz/root/101/etc/hostname')) as f:
            self.assertEqual('ct7\n', f.read())
        out = self.vzctl('set', CTID, '--ipdel', 'all')[0]
        self.assertEqual('Deleting IP address(es): 10.0.0.7\n'
                         'WARNING: Settings were not saved to config and '
                         'will be lost after CT restart (use --save flag)\n',
                         out)
        self.assertNotIn('10.0.0.7', self.veinfo())
        self.assertEqual('10.0.0.7', self.host.ct_conf(CTID)['IP_ADDRESS'])

    def test_running_container_refuses_private_and_root(self):
        self.vzctl('start', CTID)
        err = self.vzctl('set', CTID, '--private', '/x', '--save',
                         expect=32)[1]
        self.assertIn('Unable to change VE_PRIVATE on a running container',
                      err)

    def test_parameters_needing_a_restart(self):
        self.vzctl('start', CTID)
        out, err = self.vzctl('set', CTID, '--capability', 'net_admin:on',
                              '--save')
        self.assertIn('Unable to set capability on a running container\n',
                      err)
        self.assertIn('WARNING: Some of the parameters could not be applied '
                      'to a running container.\n', err)
        self.assertEqual('NET_ADMIN:on', self.host.ct_conf(CTID)['CAPABILITY'])
        self.vzctl('set', CTID, '--features', 'nfs:on', '--setmode',
                   'ignore', '--save', expect=32)
        self.assertNotIn('FEATURES', self.host.ct_conf(CTID))
        out = self.vzctl('set', CTID, '--features', 'nfs:on', '--setmode',
                         'restart', '--save')[0]
        self.assertIn('Stopping container ...\n', out)
        self.assertIn('Container start in progress...\n', out)
        self.assertEqual('nfs:on', self.host.ct_conf(CTID)['FEATURES'])

    def test_ip_in_use_by_another_container_is_78(self):
        self.vzctl('set', CTID, '--ipadd', '10.0.0.8', '--save')
        self.vzctl('start', CTID)
        self.create(ctid=102)
        self.vzctl('start', 102)
        err = self.vzctl('set', 102, '--ipadd', '10.0.0.8', '--save',
                         expect=78)[1]
        self.assertIn('Unable to add IP 10.0.0.8: Address already in use\n',
                      err)
        self.assertIn('Error: failed to apply some parameters, not saving '
                      'configuration file!\n', err)

    def test_userpasswd_on_a_stopped_container(self):
        out = self.vzctl('set', CTID, '--userpasswd', 'root:secret')[0]
        self.assertEqual('', out)
        with open(self.path('vz/private/101/etc/shadow')) as f:
            self.assertTrue(f.read().startswith('root:$sim$'))
        self.assertEqual('CTID 101 exist unmounted down\n', self.status())


class TestPloopSet(VzctlTestCase):

    def test_diskspace_of_a_ploop_container(self):
        self.vzctl('create', CTID)
        err = self.vzctl('set', CTID, '--diskspace', '4G', expect=20)[1]
        self.assertEqual("Error: can't use --diskspace without --save for a "
                         "ploop-based container\n", err)
        self.vzctl('set', CTID, '--diskspace', '3G:4G', '--save')
        self.assertEqual('3145728:4194304',
                         self.host.ct_conf(CTID)['DISKSPACE'])
        image = self.path('vz/private/101/root.hdd/root.hdd')
        self.assertEqual(4 * 1024 ** 3, os.stat(image).st_size)
        out = self.vzctl('set', CTID, '--diskinodes', '100', '--save')[0]
        self.assertIn('Warning: --diskinodes is ignored for ploop-based '
                      'container\n', out)

    def test_start_remounts_a_mounted_ploop_container(self):
        self.vzctl('create', CTID)
        self.vzctl('mount', CTID)
        out = self.vzctl('start', CTID)[0]
        self.assertIn('Container is unmounted\nAdding delta dev=/dev/ploop0 '
                      'img=%s (rw)\n' % self.path(
                          'vz/private/101/root.hdd/root.hdd'), out)
        self.assertEqual('CTID 101 exist mounted running\n', self.status())
        self.assertEqual(0, self.host.run('ploop', 'list')[0])


class TestLocking(VzctlTestCase):
    """Reference 1.1 "Locking"."""

    def setUp(self):
        super().setUp()
        self.create()
        self.lock = self.path('vz/lock/101.lck')

    def test_a_live_holder_makes_vzctl_exit_9(self):
        holder = subprocess.Popen([sys.executable, '-c',
                                   'import time; time.sleep(60)'])
        self.addCleanup(holder.wait)
        self.addCleanup(holder.kill)
        with open(self.lock, 'w') as f:
            f.write('%d\nstarting\n' % holder.pid)
        out, err = self.vzctl('start', CTID, expect=9)
        self.assertTrue(err.startswith(
            'Container already locked\nLocked by: pid %d, cmdline %s '
            % (holder.pid, sys.executable)), err)
        # status takes no lock; --skiplock bypasses it
        self.assertEqual('CTID 101 exist unmounted down\n', self.status())
        self.vzctl('--skiplock', 'start', CTID)
        self.assertTrue(os.path.exists(self.lock))

    def test_a_stale_lock_is_removed(self):
        dead = subprocess.Popen(['true'])
        dead.wait()
        with open(self.lock, 'w') as f:
            f.write('%d\n\n' % dead.pid)
        out = self.vzctl('start', CTID)[0]
        self.assertTrue(out.startswith('Removing stale lock file %s\n'
                                       % self.lock))
        self.assertFalse(os.path.exists(self.lock))

    def test_the_lock_is_held_while_the_command_runs(self):
        # a premount action script runs under vzctl's lock: it records the
        # lock file and what a concurrent vzctl gets
        seen = self.path('seen')
        script = self.path('etc/vz/conf/101.premount')
        with open(script, 'w') as f:
            f.write('#!/bin/sh\ncat %s > %s\n%s/vzctl umount 101 2>> %s\n'
                    'echo "rc=$?" >> %s\n' % (self.lock, seen,
                                              self.host.tools_dir, seen,
                                              seen))
        os.chmod(script, 0o755)
        self.vzctl('mount', CTID)
        with open(seen) as f:
            self.assertRegex(f.read(), r'^\d+\nmount\nContainer already '
                             r'locked\nLocked by: pid \d+, cmdline .*\n'
                             r'rc=9\n$')
        self.assertFalse(os.path.exists(self.lock))


class TestCheckpoint(VzctlTestCase):
    """Reference 1.9."""

    def setUp(self):
        super().setUp()
        self.create('--ipadd', '10.0.0.5')

    def test_chkpnt_suspend_and_resume_only_freeze(self):
        self.vzctl('chkpnt', CTID, '--suspend', expect=31)
        self.vzctl('start', CTID)
        self.vzctl('chkpnt', CTID, '--suspend')
        self.assertEqual('CTID 101 exist mounted running\n', self.status())
        state = self.host_state()
        self.assertTrue(state['frozen'])
        self.vzctl('chkpnt', CTID, '--resume')
        self.assertFalse(self.host_state()['frozen'])

    def host_state(self):
        with open(self.path('var/lib/vzsim/101.json')) as f:
            return json.load(f)

    def test_full_suspend_then_start_restores(self):
        self.vzctl('start', CTID)
        self.vzctl('suspend', CTID)
        self.assertEqual('CTID 101 exist unmounted down suspended\n',
                         self.status())
        self.assertTrue(os.path.exists(self.path('vz/dump/Dump.101')))
        self.assertNotIn('10.0.0.5', self.veinfo())
        out = self.vzctl('start', CTID)[0]
        self.assertIn('Dump file %s exists, trying to restore from it\n'
                      % self.path('vz/dump/Dump.101'), out)
        self.assertIn('Restoring completed successfully\n', out)
        self.assertEqual('CTID 101 exist mounted running\n', self.status())
        self.assertIn('10.0.0.5', self.veinfo())
        self.assertFalse(os.path.exists(self.path('vz/dump/Dump.101')))

    def test_resume_of_a_running_container_is_32(self):
        self.vzctl('start', CTID)
        self.vzctl('resume', CTID, expect=32)

    def test_resume_restores_and_deletes_the_dump(self):
        self.vzctl('start', CTID)
        self.vzctl('suspend', CTID)
        out = self.vzctl('resume', CTID)[0]
        self.assertIn('Restoring completed successfully\n', out)
        self.assertEqual('CTID 101 exist mounted running\n', self.status())
        self.assertFalse(os.path.exists(self.path('vz/dump/Dump.101')))

    def test_resume_without_a_dump_is_17(self):
        self.vzctl('resume', CTID, expect=17)
        self.assertEqual('CTID 101 exist unmounted down\n', self.status())

    def test_suspend_of_a_stopped_container_is_31(self):
        err = self.vzctl('suspend', CTID, expect=31)[1]
        self.assertIn('container is not running', err)
        self.assertFalse(os.path.exists(self.path('vz/dump/Dump.101')))

    def test_destroy_removes_the_dump(self):
        self.vzctl('start', CTID)
        self.vzctl('suspend', CTID)
        self.vzctl('destroy', CTID)
        self.assertFalse(os.path.exists(self.path('vz/dump/Dump.101')))


class TestSnapshots(VzctlTestCase):
    """Reference 1.10."""

    def test_simfs_has_no_snapshots(self):
        self.create()
        err = self.vzctl('snapshot', CTID, expect=156)[1]
        self.assertEqual('Snapshot feature is only available for ploop-based '
                         'CTs\n', err)

    def test_snapshot_list_switch_delete(self):
        self.vzctl('create', CTID)
        header = ('PARENT_UUID                            C UUID          '
                  '                         DATE                NAME\n')
        self.assertEqual(header, self.vzctl('snapshot-list', CTID)[0])
        guid = '{11111111-2222-3333-4444-555555555555}'
        out = self.vzctl('snapshot', CTID, '--id', guid.strip('{}'),
                         '--name', 'before')[0]
        self.assertEqual('Creating snapshot %s\nStoring %s\n'
                         'Snapshot %s has been successfully created\n'
                         % (guid, self.path('vz/private/101/Snapshots.xml'),
                            guid), out)
        listing = self.vzctl('snapshot-list', CTID, '-H')[0]
        self.assertRegex(listing, r'^ {38} \* %s \d{4}-\d\d-\d\d '
                         r'\d\d:\d\d:\d\d before\n$' % guid.replace(
                             '{', r'\{').replace('}', r'\}'))
        self.vzctl('mount', CTID)
        with open(self.path('vz/root/101/after'), 'w') as f:
            f.write('x')
        self.vzctl('snapshot-switch', CTID, '--id', guid)
        self.vzctl('mount', CTID)
        self.assertFalse(os.path.exists(self.path('vz/root/101/after')))
        self.vzctl('umount', CTID)
        self.vzctl('snapshot-switch', CTID, '--id', '{%s}' % ('0' * 8 + '-' +
                   '0000-0000-0000-000000000001'), expect=159)
        self.vzctl('snapshot-delete', CTID, expect=20)
        self.vzctl('snapshot-delete', CTID, '--id', guid)
        self.assertEqual(header, self.vzctl('snapshot-list', CTID)[0])
        self.vzctl('snapshot-delete', CTID, '--id', guid, expect=158)


class TestExec(VzctlTestCase):
    """Reference 1.8: exec joins its arguments and runs them with a shell."""

    def setUp(self):
        super().setUp()
        if os.geteuid() != 0 or not sim_fixtures.host_shell_files():
            self.skipTest('needs root and a dynamically linked dash')
        self.host.add_template('shell-1', shell=True)
        self.create('--ostemplate', 'shell-1')

    def test_exec_on_a_stopped_container(self):
        self.vzctl('exec', CTID, 'true', expect=8)
        self.assertEqual('Container is not running\n',
                         self.vzctl('exec2', CTID, 'true', expect=31)[1])

    def test_exec_and_exec2_exit_codes(self):
        self.vzctl('start', CTID)
        out = self.vzctl('exec2', CTID, 'echo', 'a', ';', 'echo', 'b')[0]
        self.assertEqual('a\nb\n', out)
        self.vzctl('exec2', CTID, 'exit 3', expect=3)
        self.vzctl('exec', CTID, 'exit 3', expect=8)
        self.vzctl('exec', CTID, 'test -f /sbin/init')
        self.vzctl('exec', CTID, expect=20)
