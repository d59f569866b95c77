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

"""Tempest against the cloud of tools/cloud.sh.

Run by ``tox -e tempest`` (``tools/cloud.sh tempest``).  Writes
``tempest.conf`` into a Tempest workspace in the cloud's directory, with
the compute feature flags set by the devstack plugin's rule: each
``<operation>:<flag>`` of ``OPENVZ_TEMPEST_FEATURES`` in
``devstack/settings`` is True when ``doc/source/user/support-matrix.ini``
marks ``operation.<operation>`` complete or partial for ``driver.openvz``
and False when missing.  Then
runs the selection and prints one line: passed, skipped, failed.

  python tools/cloud/tempest.py smoke   the compute smoke tests (CI)
  python tools/cloud/tempest.py full    tempest.api.compute.(servers|images)
  python tools/cloud/tempest.py migration
                                        cold and live migration, resize,
                                        multi-node scheduling (2 computes)
  python tools/cloud/tempest.py REGEX   any other selection
"""

import configparser
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
MATRIX = os.path.join(ROOT, 'doc', 'source', 'user', 'support-matrix.ini')
SETTINGS = os.path.join(ROOT, 'devstack', 'settings')
SELECTIONS = {
    'smoke': r'^tempest\.api\.compute\..*\[.*\bsmoke\b.*\]',
    'full': r'^tempest\.api\.compute\.(servers|images)\.',
    # Moves between hosts and resizes (two compute hosts: up --computes 2).
    'migration': r'^tempest\.(api\.compute\.(admin\.test_(migrations|'
                 r'live_migration|live_migration_negative|'
                 r'servers_on_multinodes)\.|.*resize)|'
                 r'serial_tests\.api\.compute\.admin\.test_server_affinity\.)',
}

#: Tests no simulated host can pass, for a reason outside the driver: left
#: out of every selection, each with its reason, which the run prints.
EXCLUDED = {
    r'\.LiveMigrationRemoteConsolesV26Test\.test_live_migration_serial_'
    r'console\b':
        'waits for the guest to echo what it types on the serial console; '
        'the simulated tty has no echo (vzsim vzctl console), a real '
        'container\'s getty on tty1 has',
}

#: Left out when Tempest logs in through floating IPs (up --routers), for
#: a reason in Tempest: each still runs with fixed-IP validation.
EXCLUDED_WITH_FLOATING_IPS = {
    r'\.ServerActionsTestJSON\.test_change_server_password\b':
        'boots its own server with the class\'s validation resources, '
        'which moves the class\'s floating IP to it, then deletes it: the '
        'class\'s next test that logs in has no address left (Tempest '
        '47; it passes with fixed-IP validation, without --routers)',
}


#: Tests of operations the support matrix marks missing that no Tempest
#: flag turns off: left out of every selection, by the matrix row that says
#: why (tests/unit/tools/test_cloud.py holds each row to ``missing``).
MISSING = {
    'boot-from-volume': r'\.(ServersTestBootFromVolume|'
                        r'ServerActionsV293TestJSON)\.|'
                        r'\.test_resize_volume_backed_server_confirm\b',
    'device-tags': r'\.test_device_tagging\.',
}


def left_out(matrix_path=MATRIX, floating_ips=False):
    """{regex: reason} of the tests no selection runs.

    :param floating_ips: Tempest logs in through floating IPs.
    """
    matrix = configparser.ConfigParser()
    matrix.read(matrix_path)
    tests = dict(EXCLUDED)
    if floating_ips:
        tests.update(EXCLUDED_WITH_FLOATING_IPS)
    for operation, regex in MISSING.items():
        section = 'operation.' + operation
        tests[regex] = 'the support matrix marks %s missing: %s' % (
            matrix.get(section, 'title'),
            ' '.join(matrix.get(section, 'driver-notes.openvz').split()))
    return tests


def devstack_setting(name):
    """A variable of devstack/settings, as the plugin sees it."""
    script = ('DEST=/nonexistent DATA_DIR=/nonexistent; source "$1"; '
              'printf %%s "$%s"' % name)
    return subprocess.run(['bash', '-c', script, 'settings', SETTINGS],
                          capture_output=True, text=True,
                          check=True).stdout.split()


def feature_flags(matrix_path=MATRIX):
    """{flag: bool} of [compute-feature-enabled], the plugin's rule."""
    matrix = configparser.ConfigParser()
    matrix.read(matrix_path)
    flags = {}
    for entry in devstack_setting('OPENVZ_TEMPEST_FEATURES'):
        operation, flag = entry.split(':', 1)
        status = matrix.get('operation.' + operation, 'driver.openvz',
                            fallback=None)
        if status in ('complete', 'partial'):
            flags[flag] = True
        elif status == 'missing':
            flags[flag] = False
        else:
            raise SystemExit('%s: operation.%s has no driver.openvz status'
                             % (matrix_path, operation))
    return flags


def validation(ids):
    """[validation]: Tempest logs in to servers when it can reach them all.

    It connects with the key the server was booted with: to a floating
    address through the L3 agent's routers when the cloud runs them (up
    --routers), otherwise to a fixed address on ``private`` through this
    machine's access port.  Both are on the first host only (the cloud
    page says why).
    """
    unreachable = (set(ids.get('compute_hosts', ())) -
                   set(ids.get('reachable_hosts', ())))
    if not ids.get('ssh_user') or unreachable:
        print('tempest: validation off: %s' % (
            'the image has no SSH server (up --image debian)'
            if not ids.get('ssh_user') else
            'this machine does not reach the servers of %s (up --computes 1)'
            % ', '.join(sorted(unreachable))), flush=True)
        return {'run_validation': 'False'}
    return {'run_validation': 'True',
            'connect_method': 'floating' if ids.get('routers') else 'fixed',
            'auth_method': 'keypair', 'network_for_ssh': 'private',
            'ip_version_for_ssh': '4', 'image_ssh_user': ids['ssh_user'],
            'image_alt_ssh_user': ids['ssh_user'],
            'security_group': 'True', 'security_group_rules': 'True',
            'ssh_timeout': '300'}


def write_config(work, path):
    """Write ``tempest.conf`` for the cloud in ``work``; its ids, read."""
    with open(os.path.join(work, 'clouds.yaml')) as f:
        auth = json.load(f)['clouds']['nova-openvz']['auth']
    with open(os.path.join(work, 'tempest-ids.json')) as f:
        ids = json.load(f)
    # Tempest's multi-node tests (moves, host hints) skip below two.
    computes = len(ids.get('compute_hosts', [None]))
    conf = configparser.RawConfigParser()
    conf.optionxform = str
    sections = {
        'DEFAULT': {'log_file': os.path.join(work, 'logs', 'tempest.log')},
        'auth': {'admin_username': auth['username'],
                 'admin_password': auth['password'],
                 'admin_project_name': auth['project_name'],
                 'admin_domain_name': 'Default',
                 'use_dynamic_credentials': 'True',
                 # A network and router per test project needs routers
                 # that route (up --routers).
                 'create_isolated_networks': str(bool(ids.get('routers')))},
        'identity': {'uri_v3': auth['auth_url'], 'auth_version': 'v3',
                     'region': 'RegionOne'},
        'identity-feature-enabled': {'api_v2': 'False'},
        'compute': {'image_ref': ids['image'],
                    'image_ref_alt': ids['image_alt'],
                    'flavor_ref': ids['flavor'],
                    'flavor_ref_alt': ids['flavor_alt'],
                    'fixed_network_name': 'private',
                    # Every microversion this Nova has: tests of newer API
                    # behaviour run instead of skipping.
                    'min_microversion': '2.1',
                    'max_microversion': 'latest',
                    'build_timeout': '300', 'region': 'RegionOne',
                    'min_compute_nodes': str(computes)},
        'compute-feature-enabled': dict(
            {k: str(v) for k, v in sorted(feature_flags().items())},
            # Nova's API behaviour (2.94), not the driver's.
            hostname_fqdn_sanitization='True'),
        'network': {'project_networks_reachable': 'False',
                    'shared_physical_network': 'False',
                    # Floating IPs carry traffic with up --routers only
                    # (the cloud page says why).
                    'public_network_id': ids.get('public_network', ''),
                    'floating_network_name': 'public'},
        'service_available': {'nova': 'True', 'neutron': 'True',
                              'glance': 'True', 'cinder': 'True',
                              'swift': 'False', 'heat': 'False'},
        # No cinder-backup in the cloud.
        'volume-feature-enabled': {'backup': 'False'},
        'validation': validation(ids),
    }
    if 'scheduler_filters' in ids:
        # Those of nova.conf: Tempest gives hints only to these.
        sections['compute-feature-enabled']['scheduler_enabled_filters'] = \
            ','.join(ids['scheduler_filters'])
    for section, options in sections.items():
        if section != 'DEFAULT':
            conf.add_section(section)
        for key, value in options.items():
            conf.set(section, key, value)
    with open(path, 'w') as f:
        conf.write(f)
    return ids


def main(argv):
    selection = argv[0] if argv else 'smoke'
    regex = SELECTIONS.get(selection, selection)
    work = os.environ.get('NOVA_OPENVZ_CLOUD_DIR',
                          os.path.join(ROOT, '.cloud', 'run'))
    if not os.path.exists(os.path.join(work, 'clouds.yaml')):
        raise SystemExit('tempest: no cloud in %s (tools/cloud.sh up)'
                         % work)
    workspace = os.path.join(work, 'tempest')
    if not os.path.exists(os.path.join(workspace, '.stestr.conf')):
        # The workspace registry stays in the cloud's directory too (the
        # default, ~/.tempest, refuses a second init at the same path).
        subprocess.run(['tempest', 'init', '--workspace-path',
                        os.path.join(work, 'tempest-workspaces.yaml'),
                        workspace], check=True, capture_output=True)
    config = os.path.join(workspace, 'etc', 'tempest.conf')
    ids = write_config(work, config)
    print('tempest: %s written; running %s' % (config, regex), flush=True)
    excluded = left_out(floating_ips=bool(ids.get('routers')))
    for test, reason in excluded.items():
        print('tempest: left out %s: %s' % (test, reason), flush=True)
    proc = subprocess.Popen(
        ['tempest', 'run', '--config-file', config, '--regex', regex,
         '--exclude-regex', '|'.join(excluded),
         '--concurrency', os.environ.get('TEMPEST_CONCURRENCY', '2')],
        cwd=workspace, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env=dict(os.environ, PYTHONUNBUFFERED='1'))
    counts = {}
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        match = re.match(r'^ - (Passed|Skipped|Failed): (\d+)$', line)
        if match:
            counts[match.group(1)] = int(match.group(2))
    rc = proc.wait()
    print('tempest (%s): %d passed, %d skipped, %d failed' % (
        selection, counts.get('Passed', 0), counts.get('Skipped', 0),
        counts.get('Failed', 0)))
    return rc


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
