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

"""A real OpenStack on this machine, with nova-openvz on simulated hosts.

Run by ``tools/cloud.sh`` with the Python of the cloud's virtualenv, as
root.  ``up`` starts, in order, a private Open vSwitch (userspace
datapath), MariaDB and RabbitMQ from the distribution with their state in
the working directory, then Keystone, Placement, Glance, Neutron (API, RPC
server, an Open vSwitch agent per compute host) and Nova (API, conductor,
scheduler, serial console proxy, and nova-compute with this driver on each
of one or two simulated hosts, see :class:`ComputeHost`), registers an OS
template image, two flavors and a shared network, and prints how to reach
the cloud.  ``down`` deletes the servers, stops every process it started
(by the PIDs it recorded) and removes what the cloud left on the machine:
containers, mounts, loop devices, switch bridges and ports, the second
host's address on lo.  Everything listens on 127.0.0.1 (the second host's
console agent on 127.0.0.2) or on Unix sockets in the working directory;
all logs go to ``WORK/logs``.

The HTTP APIs run as WSGI modules under uwsgi, with ``Connection: close``
(uwsgi's ``--http-socket`` resets kept-alive connections otherwise).
nova-compute reads ``nova.conf`` and ``nova-cpu.conf`` (the second one
``nova-cpu2.conf``) and starts its privileged helpers as the install guide
tells operators: through sudo and nova-rootwrap with the project's filter
file, named by absolute paths (``[nova_openvz_privsep]`` and
``[vif_plug_ovs_privileged]`` ``helper_command``).
"""

import argparse
import configparser
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
VENV = os.path.dirname(os.path.dirname(sys.executable))
BIN = os.path.join(VENV, 'bin')
HOST = '127.0.0.1'
PASSWORD = 'secret'
REGION = 'RegionOne'
#: Compute hosts ``up --computes`` may start (Tempest's migration tests
#: want two).
MAX_COMPUTES = 2

PORTS = {
    'keystone': 25000,
    'placement': 28778,
    'glance': 29292,
    'neutron': 29696,
    'nova': 28774,
    'cinder': 28776,
    'rabbit': 25672,
    'rabbit-dist': 25673,
    'epmd': 24369,
    'openflow': 26633,
    'serialproxy': 26083,
}
SERVICES = ('nova', 'neutron', 'glance', 'placement', 'cinder')
#: Nova's default filters and the two that Tempest's multi-node tests
#: give hints to (devstack enables them too).
SCHEDULER_FILTERS = ('ComputeFilter', 'ComputeCapabilitiesFilter',
                     'ImagePropertiesFilter', 'ServerGroupAntiAffinityFilter',
                     'ServerGroupAffinityFilter', 'SameHostFilter',
                     'DifferentHostFilter')
#: This machine's address on the shared network, and the device that
#: holds it (see Cloud.add_access_port).
ACCESS_ADDRESS = '10.20.0.2'
ACCESS_DEVICE = 'openvz-access'
#: With ``up --routers``: the bridge of the external network ``public``
#: and the address this machine holds on it, the public subnet's gateway
#: (the routers' default route).  Devstack's range: documentation ranges
#: such as 203.0.113.0/24 may hold a sandbox's own package mirror.
EXTERNAL_BRIDGE = 'br-ex'
PUBLIC_CIDR = '172.24.4.0/24'
PUBLIC_GATEWAY = '172.24.4.1'
#: The user that logs in to servers of each image kind, with the key
#: the server was booted with.
SSH_USERS = {'debian': 'debian'}
DATABASES = ('keystone', 'placement', 'glance', 'neutron', 'nova_api',
             'nova', 'nova_cell0', 'cinder')


def log(message):
    print('cloud: %s' % message, flush=True)


class ComputeHost(object):
    """One compute host: nova-compute, its simulated host, its L2 agent.

    Both hosts share this machine, as the functional tests' two hosts do
    (``nova_openvz/testing/multihost.py``), so everything that would be
    the same on two real hosts gets a host's own name here: the host name
    and address (127.0.0.N), the host tree, Nova's state, instance and
    lock directories, the agent's bridges, patch ports and OpenFlow port,
    and where CT IDs start (vzmigrate keeps them, a peer holding one
    refuses the move).  The first host keeps the names of a one-host cloud.
    """

    def __init__(self, cloud, index):
        suffix = str(index + 1) if index else ''
        self.index = index
        self.suffix = suffix
        self.name = 'openvz-host' + suffix
        self.address = '127.0.0.%d' % (index + 1)
        self.root = cloud.path('host' + suffix)
        self.state_path = cloud.path('data', 'nova' + suffix)
        self.lock_path = cloud.path('data', 'lock' + suffix)
        self.cpu_conf = os.path.join(cloud.etc, 'nova',
                                     'nova-cpu%s.conf' % suffix)
        self.agent_conf = os.path.join(cloud.etc, 'neutron',
                                       'ovs-agent%s.ini' % suffix)
        self.compute = 'nova-compute' + suffix
        self.agent = 'neutron-ovs-agent' + suffix
        self.int_bridge = 'br-int' + suffix
        self.tun_bridge = 'br-tun' + suffix
        self.openflow_port = PORTS['openflow'] + index
        self.first_ctid = 101 + 100000 * index

    def tool(self, name):
        return os.path.join(self.root, 'usr', 'sbin', name)


class Cloud(object):

    def __init__(self, work):
        self.work = os.path.abspath(work)
        self.etc = os.path.join(self.work, 'etc')
        self.data = os.path.join(self.work, 'data')
        self.logs = os.path.join(self.work, 'logs')
        self.pids = os.path.join(self.work, 'pids')
        self.ovs = os.path.join(self.work, 'ovs')
        self.hosts = [ComputeHost(self, i) for i in range(MAX_COMPUTES)]
        self.routers = False
        self.mysql_sock = os.path.join(self.work, 'mysql.sock')
        self.t0 = time.monotonic()
        self.timings = []

    # -- helpers --------------------------------------------------------

    def path(self, *parts):
        return os.path.join(self.work, *parts)

    def env(self, **extra):
        env = dict(os.environ)
        env['PATH'] = BIN + ':/usr/sbin:/usr/bin:/sbin:/bin'
        env.update(OVS_RUNDIR=self.ovs, OVS_LOGDIR=self.ovs,
                   OVS_DBDIR=self.ovs)
        env.pop('OS_CLOUD', None)
        env.update(extra)
        return env

    def run(self, name, argv, timeout=600, **env):
        """Run a set-up command; its output goes to logs/setup-NAME.log."""
        with open(os.path.join(self.logs, 'setup-%s.log' % name), 'a') as f:
            f.write('$ %s\n' % ' '.join(argv))
            f.flush()
            proc = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT,
                                  env=self.env(**env), timeout=timeout,
                                  cwd=self.work, check=False)
        if proc.returncode:
            raise SystemExit('cloud: %s failed (exit %d); see %s'
                             % (' '.join(argv), proc.returncode,
                                os.path.join(self.logs,
                                             'setup-%s.log' % name)))

    def start(self, name, argv, **env):
        """Start a long-running service; record its PID."""
        out = open(os.path.join(self.logs, name + '.log'), 'a')
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL,
                                env=self.env(**env), cwd=self.work,
                                start_new_session=True)
        out.close()
        with open(os.path.join(self.pids, name + '.pid'), 'w') as f:
            f.write('%d\n' % proc.pid)
        return proc

    def step(self, label, func, *args):
        start = time.monotonic()
        result = func(*args)
        took = time.monotonic() - start
        self.timings.append((label, took))
        log('%-34s %6.1f s  (total %6.1f s)'
            % (label, took, time.monotonic() - self.t0))
        return result

    def wait_for(self, what, check, timeout=120, proc_names=()):
        deadline = time.monotonic() + timeout
        while True:
            try:
                if check():
                    return
            except Exception:  # noqa: S110 - keep polling until timeout
                pass
            for name in proc_names:
                if not self.alive(name):
                    raise SystemExit('cloud: %s died; see %s' % (
                        name, os.path.join(self.logs, name + '.log')))
            if time.monotonic() > deadline:
                raise SystemExit('cloud: timed out waiting for %s' % what)
            time.sleep(0.5)

    def pid_of(self, name):
        try:
            with open(os.path.join(self.pids, name + '.pid')) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def alive(self, name):
        pid = self.pid_of(name)
        if pid is None:
            return False
        try:
            with open('/proc/%d/stat' % pid) as f:
                return f.read().split(') ')[-1][0] != 'Z'
        except OSError:
            return False

    def http_ok(self, port, path='/'):
        try:
            with urllib.request.urlopen('http://%s:%d%s' % (HOST, port, path),
                                        timeout=5) as r:
                return r.status < 500
        except urllib.error.HTTPError as e:
            return e.code < 500

    def db_url(self, name):
        return ('mysql+pymysql://openstack:%s@localhost/%s?unix_socket=%s'
                '&charset=utf8' % (PASSWORD, name, self.mysql_sock))

    @property
    def transport_url(self):
        return 'rabbit://guest:guest@%s:%d/' % (HOST, PORTS['rabbit'])

    def url(self, service):
        return 'http://%s:%d' % (HOST, PORTS[service])

    @property
    def auth_url(self):
        return self.url('keystone') + '/v3'

    def write_conf(self, path, sections):
        parser = configparser.RawConfigParser()
        parser.optionxform = str
        for section, options in sections.items():
            if section != 'DEFAULT':
                parser.add_section(section)
            for key, value in options.items():
                parser.set(section, key, str(value))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            parser.write(f)
        return path

    def authtoken(self, user):
        return {
            'www_authenticate_uri': self.auth_url,
            'auth_url': self.auth_url,
            'auth_type': 'password',
            'project_domain_name': 'Default',
            'user_domain_name': 'Default',
            'project_name': 'service',
            'username': user,
            'password': PASSWORD,
            'region_name': REGION,
        }

    def client_auth(self, user):
        """How ``user`` calls other services (no www_authenticate_uri)."""
        auth = self.authtoken(user)
        del auth['www_authenticate_uri']
        return auth

    def uwsgi(self, name, module, port, processes=2, extra=(), **env):
        return self.start(name, [
            os.path.join(BIN, 'uwsgi'),
            '--http-socket', '%s:%d' % (HOST, port),
            '--module', module, '--home', VENV,
            '--master', '--processes', str(processes), '--threads', '1',
            '--enable-threads', '--lazy-apps', '--need-app',
            '--die-on-term', '--buffer-size', '65535',
            '--add-header', 'Connection: close',
            '--hook-master-start', 'unix_signal:15 gracefully_kill_them_all',
            '--worker-reload-mercy', '2',
        ] + list(extra), **env)

    # -- up ---------------------------------------------------------------

    def up(self, image_kind, computes=1, routers=False):
        if os.path.exists(self.pids) and any(
                self.alive(n[:-4]) for n in os.listdir(self.pids)):
            raise SystemExit('cloud: already running in %s ("down" first)'
                             % self.work)
        # Open vSwitch's userspace datapath makes a kernel tap named
        # ovs-netdev; a second userspace switch in the same network
        # namespace (another cloud, the functional tests' private switch)
        # cannot, and all its bridges fail.  Refuse rather than break it.
        if os.path.exists('/sys/class/net/ovs-netdev'):
            raise SystemExit(
                'cloud: another userspace Open vSwitch runs on this machine '
                '(the ovs-netdev device exists, e.g. functional tests): two '
                'cannot share one network namespace; try again when it is '
                'gone')
        # Logs of the last run only.
        shutil.rmtree(self.logs, ignore_errors=True)
        for d in (self.etc, self.data, self.logs, self.pids):
            os.makedirs(d, exist_ok=True)
        log('working directory %s, logs in %s' % (self.work, self.logs))
        self.computes = self.hosts[:computes]
        self.routers = routers
        self.step('open vswitch (userspace)', self.start_ovs)
        self.step('rabbitmq (starting)', self.start_rabbit)
        self.step('mariadb', self.start_mariadb)
        self.write_configs()
        # Schema migrations run side by side while Keystone comes up.
        syncs = self.step('database schemas (started)', self.start_syncs)
        self.step('keystone', self.start_keystone)
        self.step('service users and endpoints', self.register_services)
        self.step('rabbitmq (ready)', self.wait_rabbit)
        self.step('database schemas (done)', self.wait_syncs, syncs)
        self.step('placement', self.start_placement)
        self.step('glance', self.start_glance)
        self.step('neutron server, rpc, ovs agent%s%s' % (
            's' if computes > 1 else '', ', l3 agent' if routers else ''),
            self.start_neutron)
        self.step('nova api, conductor, scheduler', self.start_nova)
        self.step('cinder api, scheduler, volume (loop files)',
                  self.start_cinder)
        self.step('simulated openvz host%s' % ('s' if computes > 1 else ''),
                  self.init_hosts)
        self.step('nova-compute%s (openvz driver)' % (
            ' x%d' % computes if computes > 1 else ''), self.start_computes)
        self.step('image (%s template)' % image_kind, self.add_image,
                  image_kind)
        self.step('flavors, networks, access port', self.add_resources)
        self.write_client_files()
        with open(os.path.join(self.logs, 'timings.txt'), 'w') as f:
            for label, took in self.timings:
                f.write('%-34s %6.1f\n' % (label, took))
            total = time.monotonic() - self.t0
            f.write('%-34s %6.1f\n' % ('total', total))
        log('up in %.0f s' % (time.monotonic() - self.t0))
        self.print_access()

    def start_ovs(self):
        os.makedirs(self.ovs, exist_ok=True)
        db = os.path.join(self.ovs, 'conf.db')
        if not os.path.exists(db):
            self.run('ovs', ['ovsdb-tool', 'create', db,
                             '/usr/share/openvswitch/vswitch.ovsschema'])
        sock = os.path.join(self.ovs, 'db.sock')
        self.start('ovsdb-server', [
            'ovsdb-server', db, '--remote=punix:' + sock,
            '--unixctl=' + os.path.join(self.ovs, 'ovsdb-server.ctl')])
        self.wait_for('ovsdb-server', lambda: os.path.exists(sock),
                      proc_names=('ovsdb-server',))
        self.vsctl('--no-wait', 'init')
        self.start('ovs-vswitchd', [
            'ovs-vswitchd', 'unix:' + sock,
            '--unixctl=' + os.path.join(self.ovs, 'ovs-vswitchd.ctl')])
        bridges = [host.int_bridge for host in self.computes]
        if self.routers:
            bridges.append(EXTERNAL_BRIDGE)
        for bridge in bridges:
            self.vsctl('--may-exist', 'add-br', bridge, '--', 'set',
                       'Bridge', bridge, 'datapath_type=netdev')

    def vsctl(self, *args):
        return subprocess.run(
            ['ovs-vsctl', '--db=unix:' + os.path.join(self.ovs, 'db.sock'),
             '--timeout=30'] + list(args), capture_output=True, text=True,
            check=True, env=self.env()).stdout

    def start_rabbit(self):
        base = self.path('rabbitmq')
        os.makedirs(base, exist_ok=True)
        conf = os.path.join(base, 'rabbitmq.conf')
        with open(conf, 'w') as f:
            f.write('listeners.tcp.1 = %s:%d\n' % (HOST, PORTS['rabbit']))
            f.write('loopback_users.guest = true\n')
        plugins = os.path.join(base, 'enabled_plugins')
        with open(plugins, 'w') as f:
            f.write('[].\n')
        self.rabbit_env = dict(
            HOME=base, RABBITMQ_NODENAME='rabbit-nova-openvz@localhost',
            RABBITMQ_MNESIA_BASE=os.path.join(base, 'mnesia'),
            RABBITMQ_LOG_BASE=self.logs, RABBITMQ_LOGS='-',
            RABBITMQ_CONFIG_FILE=conf[:-5],
            RABBITMQ_ENABLED_PLUGINS_FILE=plugins,
            RABBITMQ_NODE_IP_ADDRESS=HOST,
            RABBITMQ_NODE_PORT=str(PORTS['rabbit']),
            RABBITMQ_DIST_PORT=str(PORTS['rabbit-dist']),
            ERL_EPMD_ADDRESS=HOST, ERL_EPMD_PORT=str(PORTS['epmd']),
            RABBITMQ_PID_FILE=os.path.join(base, 'rabbit.pid'))
        # epmd is started first, by us, so that it is ours to stop.
        self.start('epmd', ['epmd', '-port', str(PORTS['epmd'])],
                   ERL_EPMD_ADDRESS=HOST)
        self.start('rabbitmq', ['/usr/lib/rabbitmq/bin/rabbitmq-server'],
                   **self.rabbit_env)

    def wait_rabbit(self):
        def listening():
            with socket.create_connection((HOST, PORTS['rabbit']), 2):
                return True
        self.wait_for('rabbitmq', listening, timeout=180,
                      proc_names=('rabbitmq',))

    def start_mariadb(self):
        datadir = self.path('mysql')
        if not os.path.exists(os.path.join(datadir, 'mysql')):
            self.run('mariadb', [
                'mariadb-install-db', '--no-defaults', '--user=root',
                '--datadir=' + datadir, '--skip-test-db',
                '--auth-root-authentication-method=normal'])
        self.start('mariadb', [
            '/usr/sbin/mariadbd', '--no-defaults', '--user=root',
            '--datadir=' + datadir, '--socket=' + self.mysql_sock,
            '--skip-networking', '--pid-file=' + self.path('mysql.pid'),
            '--innodb-buffer-pool-size=256M', '--max-connections=1000',
            '--character-set-server=utf8mb4',
            '--innodb-flush-log-at-trx-commit=0', '--skip-log-bin'])
        import pymysql
        self.wait_for('mariadb', lambda: pymysql.connect(
            unix_socket=self.mysql_sock, user='root').close() or True,
            proc_names=('mariadb',))
        conn = pymysql.connect(unix_socket=self.mysql_sock, user='root')
        with conn.cursor() as c:
            c.execute("CREATE USER IF NOT EXISTS 'openstack'@'localhost' "
                      "IDENTIFIED BY %s", (PASSWORD,))
            for name in DATABASES:
                c.execute('CREATE DATABASE IF NOT EXISTS %s CHARACTER SET '
                          'utf8' % name)
                c.execute("GRANT ALL ON %s.* TO 'openstack'@'localhost'"
                          % name)
        conn.commit()
        conn.close()

    def write_configs(self):
        lock = self.path('data', 'lock')
        for d in (lock, self.path('data', 'nova', 'instances'),
                  self.path('data', 'neutron')):
            os.makedirs(d, exist_ok=True)
        common = {'transport_url': self.transport_url, 'debug': 'True'}
        messaging = {'driver': 'noop'}
        # Keystone
        self.keystone_conf = self.write_conf(
            os.path.join(self.etc, 'keystone', 'keystone.conf'), {
                'DEFAULT': {'debug': 'True'},
                'database': {'connection': self.db_url('keystone')},
                'token': {'provider': 'fernet'},
                'fernet_tokens': {'key_repository': os.path.join(
                    self.etc, 'keystone', 'fernet-keys')},
                'credential': {'key_repository': os.path.join(
                    self.etc, 'keystone', 'credential-keys')},
                'oslo_messaging_notifications': messaging,
            })
        # Placement
        self.placement_conf = self.write_conf(
            os.path.join(self.etc, 'placement', 'placement.conf'), {
                'DEFAULT': {'debug': 'True'},
                'placement_database': {'connection':
                                       self.db_url('placement')},
                'api': {'auth_strategy': 'keystone'},
                'keystone_authtoken': self.authtoken('placement'),
            })
        # Glance
        gdir = os.path.join(self.etc, 'glance')
        os.makedirs(gdir, exist_ok=True)
        shutil.copy(os.path.join(VENV, 'etc', 'glance',
                                 'glance-api-paste.ini'), gdir)
        images = self.path('data', 'glance')
        self.glance_conf = self.write_conf(
            os.path.join(gdir, 'glance-api.conf'), {
                'DEFAULT': {'debug': 'True', 'enabled_backends': 'fs:file',
                            'bind_host': HOST, 'bind_port': PORTS['glance'],
                            'transport_url': self.transport_url},
                'database': {'connection': self.db_url('glance')},
                'glance_store': {'default_backend': 'fs'},
                'fs': {'filesystem_store_datadir':
                       os.path.join(images, 'images')},
                'os_glance_staging_store': {
                    'filesystem_store_datadir':
                        os.path.join(images, 'staging')},
                'os_glance_tasks_store': {
                    'filesystem_store_datadir':
                        os.path.join(images, 'tasks')},
                'paste_deploy': {'flavor': 'keystone'},
                'keystone_authtoken': self.authtoken('glance'),
                'oslo_messaging_notifications': messaging,
                'oslo_concurrency': {'lock_path': lock},
            })
        # Neutron
        ndir = os.path.join(self.etc, 'neutron')
        os.makedirs(os.path.join(ndir, 'plugins', 'ml2'), exist_ok=True)
        shutil.copy(os.path.join(VENV, 'etc', 'neutron', 'api-paste.ini'),
                    ndir)
        nova_auth = self.client_auth('nova')
        self.neutron_conf = self.write_conf(
            os.path.join(ndir, 'neutron.conf'), dict({
                'DEFAULT': dict(common, **{
                    'core_plugin': 'ml2', 'service_plugins': 'router',
                    'auth_strategy': 'keystone',
                    'api_paste_config': os.path.join(ndir, 'api-paste.ini'),
                    'state_path': self.path('data', 'neutron'),
                    'notify_nova_on_port_status_changes': 'True',
                    'notify_nova_on_port_data_changes': 'True',
                    'rpc_workers': '1', 'rpc_state_report_workers': '1',
                    # The agents name their hosts (ovs-agent*.ini).
                    'host': self.hosts[0].name,
                }),
                'database': {'connection': self.db_url('neutron')},
                'keystone_authtoken': self.authtoken('neutron'),
                'nova': nova_auth,
                'oslo_concurrency': {'lock_path': lock},
                'oslo_messaging_notifications': messaging,
                'agent': {'root_helper': '', 'report_interval': '10'},
            }))
        self.ml2_conf = self.write_conf(
            os.path.join(ndir, 'plugins', 'ml2', 'ml2_conf.ini'), {
                'ml2': {'type_drivers': 'flat,vlan,vxlan',
                        'tenant_network_types': 'vxlan',
                        'mechanism_drivers': 'openvswitch',
                        'extension_drivers': 'port_security'},
                'ml2_type_vxlan': {'vni_ranges': '1:1000'},
                'securitygroup': {'enable_security_group': 'True',
                                  'firewall_driver': 'noop'},
                'ovs': {'datapath_type': 'netdev',
                        'ovsdb_connection': 'unix:' + os.path.join(
                            self.ovs, 'db.sock'),
                        'of_listen_address': HOST},
                'agent': {'tunnel_types': 'vxlan', 'root_helper': ''},
            })
        for host in self.computes:
            # Each agent's own host name (ports bind there: nova-compute's),
            # bridges and OpenFlow port; its patch ports too, since a port
            # name is unique in the whole switch, not per bridge.
            self.write_conf(host.agent_conf, {
                'DEFAULT': {'host': host.name},
                'ovs': {'integration_bridge': host.int_bridge,
                        'tunnel_bridge': host.tun_bridge,
                        'int_peer_patch_port': 'patch-tun' + host.suffix,
                        'tun_peer_patch_port': 'patch-int' + host.suffix,
                        'local_ip': host.address,
                        'of_listen_port': host.openflow_port,
                        # The first host is the network node (up --routers).
                        'bridge_mappings': (
                            'public:' + EXTERNAL_BRIDGE
                            if self.routers and not host.index else '')},
            })
        # The L3 agent, on the first host.  The userspace datapath cannot
        # move an internal port into a router's namespace: a veth pair
        # instead (ovs_use_veth), as for the servers' ports.
        if self.routers:
            self.l3_conf = self.write_conf(
                os.path.join(ndir, 'l3_agent.ini'), {
                    'DEFAULT': {'host': self.hosts[0].name,
                                'interface_driver': 'openvswitch',
                                'ovs_use_veth': 'True',
                                'enable_metadata_proxy': 'False'},
                    'ovs': {'integration_bridge': self.hosts[0].int_bridge},
                })
        # The agent runs as root: its privileged helpers start without sudo
        # (which would not find the virtualenv's privsep-helper).
        helper = '%s --config-file %s --config-file %s' % (
            os.path.join(BIN, 'privsep-helper'), self.neutron_conf,
            self.ml2_conf)
        parser = configparser.RawConfigParser()
        parser.optionxform = str
        parser.read(self.ml2_conf)
        for section in ('privsep', 'privsep_dhcp_release',
                        'privsep_ovs_vsctl', 'privsep_namespace',
                        'privsep_conntrack', 'privsep_link'):
            parser.add_section(section)
            parser.set(section, 'helper_command', helper)
        with open(self.ml2_conf, 'w') as f:
            parser.write(f)
        # Nova: nova.conf for every service, nova-cpu.conf on top of it for
        # nova-compute (the devstack layout).
        xdir = os.path.join(self.etc, 'nova')
        os.makedirs(xdir, exist_ok=True)
        shutil.copy(os.path.join(VENV, 'etc', 'nova', 'api-paste.ini'), xdir)
        self.nova_conf = self.write_conf(
            os.path.join(xdir, 'nova.conf'), {
                'DEFAULT': dict(common, **{
                    'my_ip': HOST, 'host': self.hosts[0].name,
                    'state_path': self.path('data', 'nova'),
                    'instances_path': self.path('data', 'nova', 'instances'),
                    'rootwrap_config': os.path.join(xdir, 'rootwrap.conf'),
                    # One compute host: a resize stays on it (live).
                    'allow_resize_to_same_host': 'True',
                }),
                'api': {'auth_strategy': 'keystone'},
                'wsgi': {'api_paste_config':
                         os.path.join(xdir, 'api-paste.ini')},
                'api_database': {'connection': self.db_url('nova_api')},
                'database': {'connection': self.db_url('nova')},
                'keystone_authtoken': self.authtoken('nova'),
                'placement': nova_auth,
                'neutron': dict(nova_auth, ovs_bridge='br-int'),
                'glance': {'region_name': REGION},
                'cinder': {'os_region_name': REGION,
                           'catalog_info': 'block-storage::publicURL'},
                # Neutron's default policy lets only a service token
                # delete compute:* ports.
                'service_user': dict(nova_auth,
                                     send_service_user_token='true'),
                'oslo_concurrency': {'lock_path': lock},
                'oslo_messaging_notifications': messaging,
                'vnc': {'enabled': 'False'},
                # The driver's console: nova-serialproxy reaches each
                # host's console agent at its proxyclient_address.
                'serial_console': {
                    'enabled': 'True', 'serialproxy_host': HOST,
                    'serialproxy_port': PORTS['serialproxy'],
                    'base_url': 'ws://%s:%d/' % (HOST,
                                                 PORTS['serialproxy'])},
                'scheduler': {'discover_hosts_in_cells_interval': '-1'},
                'filter_scheduler': {'enabled_filters':
                                     ','.join(SCHEDULER_FILTERS)},
                'os_vif_ovs': {'ovsdb_connection': 'unix:' + os.path.join(
                    self.ovs, 'db.sock')},
            })
        self.write_rootwrap()
        # Cinder, with the cloud's own backend (tools/cloud/loopvolumes.py):
        # this machine's kernel has loop devices, not what LVM, iSCSI,
        # NVMe-oF or NFS need.
        cdir = os.path.join(self.etc, 'cinder')
        os.makedirs(cdir, exist_ok=True)
        shutil.copy(os.path.join(VENV, 'etc', 'cinder', 'api-paste.ini'),
                    cdir)
        self.cinder_conf = self.write_conf(
            os.path.join(cdir, 'cinder.conf'), {
                'DEFAULT': dict(common, **{
                    'my_ip': HOST, 'host': 'storage',
                    'state_path': self.path('data', 'cinder'),
                    'auth_strategy': 'keystone',
                    'api_paste_config': os.path.join(cdir, 'api-paste.ini'),
                    'osapi_volume_listen': HOST,
                    'osapi_volume_listen_port': PORTS['cinder'],
                    'enabled_backends': 'loop',
                    'default_volume_type': 'loop',
                }),
                'database': {'connection': self.db_url('cinder')},
                'keystone_authtoken': self.authtoken('cinder'),
                'nova': self.client_auth('cinder'),
                'loop': {'volume_driver': 'loopvolumes.LoopFileDriver',
                         'volume_backend_name': 'loop',
                         'loop_volumes_dir': self.path('data', 'cinder',
                                                       'volumes')},
                'oslo_concurrency': {'lock_path': lock},
                'oslo_messaging_notifications': messaging,
                'privsep_osbrick': {'helper_command': '%s --config-file %s'
                                    % (os.path.join(BIN, 'privsep-helper'),
                                       os.path.join(cdir, 'cinder.conf'))},
            })

    def write_rootwrap(self):
        """nova-rootwrap's configuration and the project's filters.

        The shipped filters allow configuration files under /etc only; the
        cloud keeps its own under the working directory, so its copy has
        that directory in place of /etc (the only change).
        """
        xdir = os.path.join(self.etc, 'nova')
        filters = os.path.join(xdir, 'rootwrap.d')
        os.makedirs(filters, exist_ok=True)
        with open(os.path.join(ROOT, 'etc', 'nova', 'rootwrap.d',
                               'openvz.filters')) as f:
            text = f.read()
        text = text.replace('/etc/(?!', '%s/(?!' % self.etc)
        with open(os.path.join(filters, 'openvz.filters'), 'w') as f:
            f.write(text)
        self.write_conf(os.path.join(xdir, 'rootwrap.conf'), {'DEFAULT': {
            'filters_path': filters,
            'exec_dirs': BIN + ',/sbin,/usr/sbin,/bin,/usr/bin',
            'use_syslog': 'False',
        }})

    def start_syncs(self):
        procs = {}

        def bg(name, argv):
            out = open(os.path.join(self.logs, 'setup-%s.log' % name), 'a')
            procs[name] = subprocess.Popen(argv, stdout=out,
                                           stderr=subprocess.STDOUT,
                                           env=self.env(), cwd=self.work)
            out.close()

        bg('placement-db', [os.path.join(BIN, 'placement-manage'),
                            '--config-file', self.placement_conf,
                            'db', 'sync'])
        bg('glance-db', [os.path.join(BIN, 'glance-manage'),
                         '--config-file', self.glance_conf, 'db_sync'])
        bg('neutron-db', [os.path.join(BIN, 'neutron-db-manage'),
                          '--config-file', self.neutron_conf,
                          '--config-file', self.ml2_conf, 'upgrade', 'heads'])
        nova_manage = [os.path.join(BIN, 'nova-manage'), '--config-file',
                       self.nova_conf]
        script = ' && '.join([
            ' '.join(nova_manage + ['api_db', 'sync']),
            ' '.join(nova_manage + ['cell_v2', 'map_cell0',
                                    '--database_connection',
                                    "'%s'" % self.db_url('nova_cell0')]),
            ' '.join(nova_manage + ['cell_v2', 'create_cell', '--name',
                                    'cell1']),
            ' '.join(nova_manage + ['db', 'sync'])])
        bg('nova-db', ['/bin/sh', '-c', script])
        bg('cinder-db', [os.path.join(BIN, 'cinder-manage'), '--config-file',
                         self.cinder_conf, 'db', 'sync'])
        return procs

    def wait_syncs(self, procs):
        for name, proc in procs.items():
            if proc.wait(timeout=900):
                raise SystemExit('cloud: %s failed; see %s' % (
                    name, os.path.join(self.logs, 'setup-%s.log' % name)))

    def start_keystone(self):
        kdir = os.path.join(self.etc, 'keystone')
        manage = [os.path.join(BIN, 'keystone-manage'), '--config-file',
                  self.keystone_conf]
        self.run('keystone', manage + ['db_sync'])
        for what in ('fernet_setup', 'credential_setup'):
            self.run('keystone', manage + [what, '--keystone-user', 'root',
                                           '--keystone-group', 'root'])
        self.run('keystone', manage + [
            'bootstrap', '--bootstrap-password', PASSWORD,
            '--bootstrap-admin-url', self.auth_url,
            '--bootstrap-internal-url', self.auth_url,
            '--bootstrap-public-url', self.auth_url,
            '--bootstrap-region-id', REGION])
        self.uwsgi('keystone', 'keystone.wsgi.api', PORTS['keystone'],
                   OS_KEYSTONE_CONFIG_DIR=kdir)
        self.wait_for('keystone', lambda: self.http_ok(PORTS['keystone'],
                                                       '/v3'),
                      proc_names=('keystone',))

    def sdk(self):
        import openstack
        return openstack.connect(
            auth_url=self.auth_url, username='admin', password=PASSWORD,
            project_name='admin', user_domain_name='Default',
            project_domain_name='Default', region_name=REGION,
            identity_api_version='3')

    def register_services(self):
        conn = self.sdk()
        ident = conn.identity
        service_project = ident.find_project('service') or \
            ident.create_project(name='service', domain_id='default')
        roles = {}
        for role in ('admin', 'service', 'member', 'reader', 'manager'):
            roles[role] = ident.find_role(role) or \
                ident.create_role(name=role)
        kinds = {'nova': ('compute', '/v2.1'), 'placement': ('placement', ''),
                 'glance': ('image', ''), 'neutron': ('network', ''),
                 'cinder': ('block-storage', '/v3')}
        for name in SERVICES:
            user = ident.find_user(name, domain_id='default') or \
                ident.create_user(name=name, password=PASSWORD,
                                  domain_id='default')
            for role in ('admin', 'service'):
                ident.assign_project_role_to_user(service_project, user,
                                                  roles[role])
            kind, suffix = kinds[name]
            service = ident.find_service(name) or \
                ident.create_service(name=name, type=kind)
            for interface in ('public', 'internal'):
                ident.create_endpoint(service_id=service.id,
                                      interface=interface,
                                      url=self.url(name) + suffix,
                                      region_id=REGION)

    def start_placement(self):
        self.uwsgi('placement', 'placement.wsgi.api', PORTS['placement'],
                   OS_PLACEMENT_CONFIG_DIR=os.path.dirname(
                       self.placement_conf))
        self.wait_for('placement', lambda: self.http_ok(PORTS['placement']),
                      proc_names=('placement',))

    def start_glance(self):
        for sub in ('images', 'staging', 'tasks'):
            os.makedirs(self.path('data', 'glance', sub), exist_ok=True)
        # Nova uploads snapshots chunked, as fast as it packs them: under
        # load a chunk can take longer than uwsgi's 4 s socket timeout.
        self.uwsgi('glance', 'glance.wsgi.api', PORTS['glance'],
                   extra=['--socket-timeout', '300',
                          '--chunked-input-timeout', '300',
                          '--chunked-input-limit', '4096000'],
                   OS_GLANCE_CONFIG_DIR=os.path.dirname(self.glance_conf))
        self.wait_for('glance', lambda: self.http_ok(PORTS['glance']),
                      proc_names=('glance',))

    def add_addresses(self):
        """Put the other hosts' addresses on lo.

        127.0.0.0/8 reaches this machine already, but an agent refuses a
        tunnel address (its ``local_ip``) that no interface holds.  The
        ones added are recorded for ``down`` to take away.
        """
        shown = subprocess.run(['ip', '-o', 'addr', 'show', 'dev', 'lo'],
                               capture_output=True, text=True,
                               check=True).stdout
        for host in self.computes[1:]:
            if ' %s/' % host.address not in shown:
                self.run('ovs', ['ip', 'addr', 'add', host.address + '/32',
                                 'dev', 'lo'])
                with open(self.path('lo-addresses'), 'a') as f:
                    f.write(host.address + '\n')

    def remove_addresses(self):
        try:
            with open(self.path('lo-addresses')) as f:
                addresses = f.read().split()
        except FileNotFoundError:
            return
        for address in addresses:
            subprocess.run(['ip', 'addr', 'del', address + '/32', 'dev',
                            'lo'], capture_output=True, check=False)
        os.unlink(self.path('lo-addresses'))

    def start_neutron(self):
        self.add_addresses()
        confs = ['--config-file', self.neutron_conf, '--config-file',
                 self.ml2_conf]
        self.uwsgi('neutron-api', 'neutron.wsgi.api', PORTS['neutron'],
                   OS_NEUTRON_CONFIG_DIR=os.path.join(self.etc, 'neutron'))
        self.start('neutron-rpc-server',
                   [os.path.join(BIN, 'neutron-rpc-server')] + confs)
        for host in self.computes:
            self.start(host.agent,
                       [os.path.join(BIN, 'neutron-openvswitch-agent')] +
                       confs + ['--config-file', host.agent_conf])
        self.wait_for('neutron-api', lambda: self.http_ok(PORTS['neutron']),
                      proc_names=('neutron-api',), timeout=180)
        conn = self.sdk()
        names = {host.name for host in self.computes}

        def agents_up():
            return names <= {a.host for a in conn.network.agents()
                             if a.is_alive and
                             a.agent_type == 'Open vSwitch agent'}
        self.wait_for('the Open vSwitch agents', agents_up, timeout=180,
                      proc_names=['neutron-rpc-server'] +
                      [host.agent for host in self.computes])
        if self.routers:
            self.start_l3_agent(conn, confs)

    @staticmethod
    def check_public_range_is_free():
        """Refuse to shadow a network this machine already reaches.

        Holding the public gateway adds a route to ``PUBLIC_CIDR``; one
        that overlaps a route of this machine's (its mirror, its DNS
        server) would cut it off.
        """
        public = ipaddress.ip_network(PUBLIC_CIDR)
        routes = json.loads(subprocess.run(
            ['ip', '-j', 'route', 'show'], capture_output=True, text=True,
            check=True).stdout or '[]')
        for route in routes:
            dst = route.get('dst', 'default')
            if dst != 'default' and route.get('dev') != EXTERNAL_BRIDGE and \
                    ipaddress.ip_network(dst, strict=False).overlaps(public):
                raise SystemExit(
                    'cloud: this machine routes %s (dev %s), which overlaps '
                    'the public network %s: --routers would cut it off'
                    % (dst, route.get('dev'), PUBLIC_CIDR))

    def start_l3_agent(self, conn, confs):
        """Routers and floating IPs, reached through ``br-ex``.

        This machine holds the public subnet's gateway address on the
        external bridge, as devstack does: it reaches a floating IP
        through the router that holds it, and the routers reach it.
        """
        self.check_public_range_is_free()
        self.run('l3', ['ip', 'addr', 'replace', '%s/%s' % (
            PUBLIC_GATEWAY, PUBLIC_CIDR.split('/')[1]),
            'dev', EXTERNAL_BRIDGE])
        self.run('l3', ['ip', 'link', 'set', EXTERNAL_BRIDGE, 'up'])
        self.start('neutron-l3-agent',
                   [os.path.join(BIN, 'neutron-l3-agent')] + confs +
                   ['--config-file', self.l3_conf])

        def l3_agent_up():
            return any(a.is_alive for a in conn.network.agents()
                       if a.agent_type == 'L3 agent')
        self.wait_for('the L3 agent', l3_agent_up, timeout=180,
                      proc_names=['neutron-l3-agent'])

    def start_nova(self):
        conf = ['--config-file', self.nova_conf]
        self.uwsgi('nova-api', 'nova.wsgi.osapi_compute', PORTS['nova'],
                   OS_NOVA_CONFIG_DIR=os.path.join(self.etc, 'nova'))
        self.start('nova-conductor',
                   [os.path.join(BIN, 'nova-conductor')] + conf)
        self.start('nova-scheduler',
                   [os.path.join(BIN, 'nova-scheduler')] + conf)
        self.start('nova-serialproxy',
                   [os.path.join(BIN, 'nova-serialproxy')] + conf)
        self.wait_for('nova-api', lambda: self.http_ok(PORTS['nova']),
                      proc_names=('nova-api',))

    def start_cinder(self):
        conf = ['--config-file', self.cinder_conf]
        self.uwsgi('cinder-api', 'cinder.wsgi.api', PORTS['cinder'],
                   extra=['--pyargv', ' '.join(conf)])
        self.start('cinder-scheduler',
                   [os.path.join(BIN, 'cinder-scheduler')] + conf)
        # The backend's module is found next to this script.
        self.start('cinder-volume', [os.path.join(BIN, 'cinder-volume')] +
                   conf, PYTHONPATH=os.path.dirname(os.path.abspath(
                       __file__)))
        self.wait_for('cinder-api', lambda: self.http_ok(PORTS['cinder']),
                      proc_names=('cinder-api',))
        conn = self.sdk()

        def volume_service_up():
            return any(s.binary == 'cinder-volume' and s.state == 'up'
                       for s in conn.block_storage.services())
        self.wait_for('cinder-volume', volume_service_up, timeout=120,
                      proc_names=('cinder-scheduler', 'cinder-volume'))
        if not conn.block_storage.find_type('loop'):
            conn.block_storage.create_type(
                name='loop', extra_specs={'volume_backend_name': 'loop'})

    def init_hosts(self):
        for host in self.computes:
            self.run('host', [os.path.join(BIN, 'nova-openvz'), 'simulate',
                              'init', host.root])
            # vzmigrate reaches the other hosts under their names (a live
            # move) and addresses (a cold one), as ssh would.
            peers = {}
            for other in self.computes:
                if other is not host:
                    peers[other.name] = peers[other.address] = other.root
            with open(os.path.join(host.root, 'sim', 'hosts.json'),
                      'w') as f:
                json.dump(peers, f)
        out = subprocess.run([os.path.join(BIN, 'nova-openvz'), 'simulate',
                              'info', self.hosts[0].root],
                             capture_output=True,
                             text=True, env=self.env(), check=False).stdout
        with open(os.path.join(self.logs, 'setup-host.log'), 'a') as f:
            f.write(out)
        for line in out.splitlines():
            if line.lower().startswith('kernel'):
                log('  ' + line.strip())

    def start_computes(self):
        for host in self.computes:
            self.start_compute(host)
        conn = self.sdk()
        names = {host.name for host in self.computes}

        def registered():
            return names <= {s.host for s in conn.compute.services()
                             if s.binary == 'nova-compute' and
                             s.state == 'up'}
        procs = [host.compute for host in self.computes]
        self.wait_for('nova-compute', registered, timeout=180,
                      proc_names=procs)
        self.run('nova-db', [os.path.join(BIN, 'nova-manage'),
                             '--config-file', self.nova_conf, 'cell_v2',
                             'discover_hosts', '--verbose'])

        def in_placement():
            return names <= {rp.name for rp in
                             conn.placement.resource_providers()}
        self.wait_for('the compute nodes in placement', in_placement,
                      timeout=120, proc_names=procs)

    def start_compute(self, host):
        sim = configparser.RawConfigParser()
        sim.read(os.path.join(host.root, 'nova-openvz.conf'))
        openvz = {k: sim.get('openvz', k) for k in
                  ('tools_dir', 'vz_conf', 'host_root', 'libvirt_uri')}
        openvz.update(
            first_ctid=host.first_ctid,
            migration_peers=','.join(other.name for other in self.computes
                                     if other is not host))
        # The install guide's privileged helpers: sudo, then nova-rootwrap
        # with its configuration, named by absolute paths (sudo's
        # secure_path does not search a virtualenv), then privsep-helper
        # with the two configuration files nova-compute reads.
        helper = 'sudo %s %s privsep-helper --config-file %s ' \
                 '--config-file %s' % (
                     os.path.join(BIN, 'nova-rootwrap'),
                     os.path.join(self.etc, 'nova', 'rootwrap.conf'),
                     self.nova_conf, host.cpu_conf)
        for d in (host.lock_path, os.path.join(host.state_path,
                                               'instances')):
            os.makedirs(d, exist_ok=True)
        self.write_conf(host.cpu_conf, {
            # What differs between hosts (nova.conf names the first).
            'DEFAULT': {'compute_driver': 'openvz.OpenVZDriver',
                        'host': host.name, 'my_ip': host.address,
                        'state_path': host.state_path,
                        'instances_path': os.path.join(host.state_path,
                                                       'instances'),
                        # No metadata service runs: every server gets
                        # its config drive, as devstack's
                        # FORCE_CONFIG_DRIVE gives CI jobs.
                        'force_config_drive': 'True'},
            # Both hosts' ports have the same device names on this one
            # machine: the destination's plug finds the source's device in
            # the switch already, so its agent never reports the port
            # before the move, which Nova would otherwise wait for.
            'compute': {'live_migration_wait_for_vif_plug': 'False'},
            'openvz': openvz,
            'oslo_concurrency': {'lock_path': host.lock_path},
            'serial_console': {'proxyclient_address': host.address},
            'nova_openvz_privsep': {'helper_command': helper},
            'vif_plug_ovs_privileged': {'helper_command': helper},
            'privsep_osbrick': {'helper_command': helper},
        })
        self.start(host.compute, [
            os.path.join(BIN, 'nova-compute'), '--config-file',
            self.nova_conf, '--config-file', host.cpu_conf])

    def template(self, kind):
        from vzsim import templates
        out = os.path.join(self.data, '%s-template.tar.gz' % kind)
        # Keyed by the builder's recipe: a changed recipe builds anew.
        cache = os.path.join(ROOT, '.cloud', 'cache', '%s-template-%s.tar.gz'
                             % (kind, templates.recipe_id()))
        if os.path.exists(cache):
            shutil.copy(cache, out)
            return out
        # The simulated host's template builder.
        self.run('image', [sys.executable, '-m', 'vzsim.templates', kind, out],
                 timeout=1800)
        if kind == 'debian':
            os.makedirs(os.path.dirname(cache), exist_ok=True)
            for old in os.listdir(os.path.dirname(cache)):
                if old.startswith('%s-template' % kind):
                    os.unlink(os.path.join(os.path.dirname(cache), old))
            shutil.copy(out, cache)
        return out

    def add_image(self, kind):
        path = self.template(kind)
        conn = self.sdk()
        props = {'img_hv_type': 'openvz', 'hw_vm_mode': 'exe'}
        if kind == 'debian':
            # Nova's set-password goes to the user who logs in.
            props.update(os_distro='debian', os_version='12',
                         os_admin_user=SSH_USERS[kind])
        # Two images of the same template: Tempest's rebuild tests need
        # distinct image_ref and image_ref_alt.
        self.image_ids = []
        self.image_kind = kind
        for name in ('openvz-%s' % kind, 'openvz-%s-alt' % kind):
            image = conn.image.create_image(
                name=name, filename=path, disk_format='raw',
                container_format='bare', visibility='public', wait=True,
                allow_duplicates=True, **props)
            self.image_ids.append(image.id)

    def add_resources(self):
        conn = self.sdk()
        for name, ram, flavor_id in (('m1.openvz', 128, '42'),
                                     ('m1.openvz-alt', 192, '84')):
            if not conn.compute.find_flavor(name):
                conn.compute.create_flavor(name=name, ram=ram, vcpus=1,
                                           disk=1, id=flavor_id)
        net = conn.network.find_network('private') or \
            conn.network.create_network(name='private', shared=True)
        if not list(conn.network.subnets(network_id=net.id)):
            conn.network.create_subnet(
                network_id=net.id, name='private-subnet', ip_version=4,
                cidr='10.20.0.0/24', gateway_ip='10.20.0.1',
                enable_dhcp=False)
        self.add_public_network(conn, net)
        self.add_access_port(conn, net)

    def add_public_network(self, conn, private):
        """An external network and a router from ``private`` to it.

        Floating IPs can then be allocated and associated with servers on
        ``private`` through Neutron's and Nova's APIs.  They carry traffic
        only with ``up --routers`` (the L3 agent, which needs iptables and
        a namespace per router); otherwise this machine reaches servers
        through its access port.
        """
        public = conn.network.find_network('public') or \
            conn.network.create_network(
                name='public', is_router_external=True,
                provider_network_type='flat',
                provider_physical_network='public')
        if not list(conn.network.subnets(network_id=public.id)):
            conn.network.create_subnet(
                network_id=public.id, name='public-subnet', ip_version=4,
                cidr=PUBLIC_CIDR, gateway_ip=PUBLIC_GATEWAY,
                enable_dhcp=False)
        if not conn.network.find_router('router'):
            router = conn.network.create_router(
                name='router',
                external_gateway_info={'network_id': public.id})
            subnet = next(conn.network.subnets(network_id=private.id))
            conn.network.add_interface_to_router(router, subnet_id=subnet.id)
        self.public_network_id = public.id

    def add_access_port(self, conn, net):
        """Give this machine an address on the shared network.

        A Neutron port bound to the first host, plugged into its
        integration bridge as an internal port that holds the port's MAC
        and ``ACCESS_ADDRESS``: that host's agent wires it like a server's
        port, so users and Tempest's validation reach the first host's
        servers (SSH, ping) as on a real network.  No port security: the
        machine is not a tenant.
        """
        host = self.computes[0]
        subnet = next(conn.network.subnets(network_id=net.id))
        port = conn.network.find_port(ACCESS_DEVICE) or \
            conn.network.create_port(
                name=ACCESS_DEVICE, network_id=net.id,
                device_owner='nova-openvz:host-access',
                binding_host_id=host.name, port_security_enabled=False,
                fixed_ips=[{'subnet_id': subnet.id,
                            'ip_address': ACCESS_ADDRESS}])
        self.vsctl(
            '--may-exist', 'add-port', host.int_bridge, ACCESS_DEVICE, '--',
            'set', 'Interface', ACCESS_DEVICE, 'type=internal',
            'mac="%s"' % port.mac_address,
            'external_ids:iface-id=%s' % port.id,
            'external_ids:attached-mac=%s' % port.mac_address,
            'external_ids:iface-status=active')
        self.run('access', ['ip', 'addr', 'replace', '%s/%d' % (
            ACCESS_ADDRESS, int(subnet.cidr.split('/')[1])),
            'dev', ACCESS_DEVICE])
        self.run('access', ['ip', 'link', 'set', ACCESS_DEVICE, 'up'])
        self.wait_for('access port ACTIVE', lambda: conn.network.get_port(
            port.id).status == 'ACTIVE')

    def write_client_files(self):
        clouds = {'clouds': {'nova-openvz': {
            'auth': {'auth_url': self.auth_url, 'username': 'admin',
                     'password': PASSWORD, 'project_name': 'admin',
                     'user_domain_name': 'Default',
                     'project_domain_name': 'Default'},
            'region_name': REGION, 'identity_api_version': '3'}}}
        with open(self.path('clouds.yaml'), 'w') as f:
            json.dump(clouds, f, indent=2)   # JSON is YAML
        with open(self.path('openrc'), 'w') as f:
            f.write(self.openrc())
        with open(self.path('tempest-ids.json'), 'w') as f:
            json.dump({'image': self.image_ids[0],
                       'image_alt': self.image_ids[1],
                       'flavor': '42', 'flavor_alt': '84',
                       'compute_hosts': [h.name for h in self.computes],
                       # Whose servers this machine reaches (the access
                       # port), and who logs in to the image (cloud-init's
                       # default user; the busybox guest has no SSH server).
                       'reachable_hosts': [self.computes[0].name],
                       'ssh_user': SSH_USERS.get(self.image_kind),
                       'public_network': self.public_network_id,
                       # Floating IPs carry traffic: Tempest may give each
                       # test project its own network and router.
                       'routers': self.routers,
                       'scheduler_filters': list(SCHEDULER_FILTERS)}, f)

    def openrc(self):
        return ''.join('export %s=%s\n' % kv for kv in (
            ('OS_AUTH_URL', self.auth_url), ('OS_USERNAME', 'admin'),
            ('OS_PASSWORD', PASSWORD), ('OS_PROJECT_NAME', 'admin'),
            ('OS_USER_DOMAIN_NAME', 'Default'),
            ('OS_PROJECT_DOMAIN_NAME', 'Default'),
            ('OS_REGION_NAME', REGION), ('OS_IDENTITY_API_VERSION', '3')))

    def print_access(self):
        print('\nThe cloud is up. Use it with the openstack client of %s:\n'
              % BIN)
        print(self.openrc())
        print('or OS_CLIENT_CONFIG_FILE=%s OS_CLOUD=nova-openvz\n'
              % self.path('clouds.yaml'))
        print('for example:\n  openstack server create --flavor m1.openvz '
              '--image openvz-<kind> --network private demo\n'
              'Stop it with: tools/cloud.sh down\n')

    # -- demo -------------------------------------------------------------

    def demo(self):
        """Two servers on the shared network; the second pings the first.

        This machine pings the second through its access port.  Then a
        Cinder volume is attached to the first, seen in its container as a
        block device, and detached.

        Both are booted through Nova's API as a user would; the ping runs
        inside the second container (``vzctl exec2`` of the simulated
        host: the busybox guest has no SSH server).  The servers are
        deleted at the end, whatever happened.
        """
        t0 = time.monotonic()
        conn = self.sdk()
        image = next(i for i in conn.image.images()
                     if i.name.startswith('openvz-'))
        flavor = conn.compute.find_flavor('m1.openvz')
        net = conn.network.find_network('private')
        # Both on the first host: the tunnel between the hosts' switches
        # carries nothing on one machine (see the cloud's admin page).
        servers = [conn.compute.create_server(
            name=name, image_id=image.id, flavor_id=flavor.id,
            networks=[{'uuid': net.id}],
            availability_zone='nova:' + self.hosts[0].name)
            for name in ('demo-1', 'demo-2')]
        try:
            servers = [conn.compute.wait_for_server(s, wait=300)
                       for s in servers]
            addresses = [s.addresses['private'][0]['addr'] for s in servers]
            for server, address in zip(servers, addresses):
                log('%s ACTIVE at %s' % (server.name, address))
            host, ctid = self.container_of(servers[1].id)
            self.ping('demo-2', [host.tool('vzctl'), 'exec2', ctid,
                                 'ping -c 1 -W 1 %s' % addresses[0]])
            log('demo-2 pings demo-1 (%.0f s)' % (time.monotonic() - t0))
            self.ping('this machine', ['ping', '-c', '1', '-W', '1',
                                       addresses[1]])
            log('this machine pings demo-2 through %s (%s)'
                % (ACCESS_DEVICE, ACCESS_ADDRESS))
            self.demo_volume(conn, servers[0])
        finally:
            for server in servers:
                conn.compute.delete_server(server, ignore_missing=True)
            for server in servers:
                conn.compute.wait_for_delete(server, wait=120)

    def ping(self, who, argv, timeout=30):
        """Run a one-packet ping until it gets an answer, or fail."""
        deadline = time.monotonic() + timeout
        while True:
            proc = subprocess.run(argv, capture_output=True, text=True,
                                  check=False, env=self.env())
            if proc.returncode == 0 or time.monotonic() > deadline:
                break
        print(proc.stdout, end='')
        if proc.returncode:
            raise SystemExit('cloud: %s gets no answer: %s: %s%s' % (
                who, ' '.join(argv), proc.stdout, proc.stderr))

    def demo_volume(self, conn, server):
        """A Cinder volume attached to a server reaches its container."""
        t0 = time.monotonic()
        volume = conn.block_storage.create_volume(name='demo-volume', size=1)
        try:
            conn.block_storage.wait_for_status(volume, 'available', wait=60)
            attachment = conn.compute.create_volume_attachment(
                server, volume_id=volume.id)
            conn.block_storage.wait_for_status(volume, 'in-use', wait=60)
            host, ctid = self.container_of(server.id)
            proc = subprocess.run(
                [host.tool('vzctl'), 'exec2', ctid,
                 'test -b %s' % attachment.device], capture_output=True,
                text=True, check=False, env=self.env())
            if proc.returncode:
                raise SystemExit('cloud: %s is not in demo-1: %s%s' % (
                    attachment.device, proc.stdout, proc.stderr))
            log('volume attached to demo-1 as %s (%.0f s)'
                % (attachment.device, time.monotonic() - t0))
            conn.compute.delete_volume_attachment(server, volume.id)
            conn.block_storage.wait_for_status(volume, 'available', wait=60)
            log('volume detached')
        finally:
            conn.block_storage.delete_volume(volume, ignore_missing=True)

    def containers(self, host):
        """``vzlist -a -j`` of a host: [] if it has no tree or no list."""
        if not os.path.exists(host.tool('vzlist')):
            return []
        proc = subprocess.run([host.tool('vzlist'), '-a', '-j'],
                              capture_output=True, text=True, check=False,
                              env=self.env())
        try:
            return json.loads(proc.stdout or '[]')
        except ValueError:
            return []

    def container_of(self, uuid):
        """(host, CT ID) of a server's container."""
        for host in self.hosts:
            for ct in self.containers(host):
                if ct.get('name') == uuid:
                    return host, str(ct['ctid'])
        raise SystemExit('cloud: no container for server %s' % uuid)

    # -- down -------------------------------------------------------------

    def delete_servers(self):
        if not self.alive('nova-api') or not self.alive('keystone'):
            return
        try:
            conn = self.sdk()
            servers = list(conn.compute.servers(all_projects=True))
            for server in servers:
                conn.compute.delete_server(server, force=True)
            deadline = time.monotonic() + 120
            while servers and time.monotonic() < deadline:
                servers = list(conn.compute.servers(all_projects=True))
                time.sleep(1)
            if servers:
                log('%d servers still there; removing them by hand'
                    % len(servers))
        except Exception as e:  # noqa: BLE001 - tear down regardless
            log('could not delete servers through Nova: %s' % e)

    def stop(self, *names, timeout=10):
        """Stop services together: TERM, then KILL what still runs.

        Together, because some (the Open vSwitch agents) take the whole
        timeout and each host has one.
        """
        pids = {name: self.pid_of(name) for name in names}
        pids = {name: pid for name, pid in pids.items() if pid is not None}
        for pid in pids.values():
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(
                self._group_alive(pid) for pid in pids.values()):
            time.sleep(0.2)
        for name, pid in pids.items():
            if self._group_alive(pid):
                log('%s did not stop in %d s: killed' % (name, timeout))
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            os.unlink(os.path.join(self.pids, name + '.pid'))

    def _group_alive(self, pgid):
        for pid in os.listdir('/proc'):
            if not pid.isdigit():
                continue
            try:
                with open('/proc/%s/stat' % pid) as f:
                    fields = f.read().rsplit(') ', 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != 'Z':
                return True
        return False

    def leftover_processes(self):
        """Processes whose command line names the working directory."""
        found = []
        for pid in os.listdir('/proc'):
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                with open('/proc/%s/cmdline' % pid, 'rb') as f:
                    cmdline = f.read().replace(b'\0', b' ').decode(
                        errors='replace')
            except OSError:
                continue
            if self.work in cmdline:
                found.append((int(pid), cmdline.strip()))
        return found

    def remove_containers(self):
        for host in self.hosts:
            vzctl = host.tool('vzctl')
            for ct in self.containers(host):
                ctid = str(ct.get('ctid'))
                log('removing container %s left behind on %s'
                    % (ctid, host.name))
                subprocess.run([vzctl, 'stop', ctid, '--fast'],
                               capture_output=True, check=False,
                               env=self.env())
                subprocess.run([vzctl, 'destroy', ctid],
                               capture_output=True, check=False,
                               env=self.env())

    def remove_router_namespaces(self):
        """The L3 agent's namespaces, and with them its veth pairs."""
        listed = subprocess.run(['ip', 'netns', 'list'], capture_output=True,
                                text=True, check=False).stdout
        for line in listed.splitlines():
            name = line.split()[0] if line.split() else ''
            if name.startswith('qrouter-'):
                subprocess.run(['ip', 'netns', 'delete', name],
                               capture_output=True, check=False)

    def unmount_all(self):
        for _ in range(3):
            with open('/proc/self/mountinfo') as f:
                mounts = [line.split()[4] for line in f]
            ours = sorted((m for m in mounts
                           if m == self.work or
                           m.startswith(self.work + '/')),
                          key=len, reverse=True)
            if not ours:
                return
            for mount in ours:
                subprocess.run(['umount', '-l', mount], capture_output=True,
                               check=False)

    def detach_loops(self):
        proc = subprocess.run(['losetup', '-l', '-n', '-O', 'NAME,BACK-FILE'],
                              capture_output=True, text=True, check=False)
        for line in proc.stdout.splitlines():
            parts = line.split(None, 1)
            if len(parts) == 2 and parts[1].startswith(self.work + '/'):
                subprocess.run(['losetup', '-d', parts[0]],
                               capture_output=True, check=False)

    def down(self):
        t0 = time.monotonic()
        if not os.path.isdir(self.work):
            log('nothing in %s' % self.work)
            return
        self.delete_servers()
        ports = []
        if self.alive('ovsdb-server'):
            for host in self.hosts:
                try:
                    ports += self.vsctl('list-ports',
                                        host.int_bridge).split()
                except subprocess.CalledProcessError:
                    pass
        order = ([host.compute for host in self.hosts],
                 ['nova-api', 'nova-serialproxy', 'nova-scheduler',
                  'nova-conductor', 'cinder-api', 'cinder-scheduler',
                  'cinder-volume'],
                 [host.agent for host in self.hosts] + ['neutron-l3-agent'],
                 ['neutron-rpc-server', 'neutron-api', 'glance',
                  'placement', 'keystone'],
                 ['rabbitmq'], ['epmd'], ['mariadb'])
        for names in order:
            self.stop(*names)
        self.remove_containers()
        self.remove_router_namespaces()
        for pid, cmdline in self.leftover_processes():
            if 'ovsdb-server' in cmdline or 'ovs-vswitchd' in cmdline:
                continue
            log('stopping left-over process %d: %s' % (pid, cmdline[:100]))
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.alive('ovsdb-server'):
            try:
                for bridge in self.vsctl('list-br').split():
                    self.vsctl('--if-exists', 'del-br', bridge)
            except subprocess.CalledProcessError:
                pass
        self.stop('ovs-vswitchd')
        self.stop('ovsdb-server')
        for port in ports:
            subprocess.run(['ip', 'link', 'delete', port],
                           capture_output=True, check=False)
        for name in os.listdir(self.pids) if os.path.isdir(self.pids) else ():
            self.stop(name[:-4])
        self.remove_addresses()
        self.unmount_all()
        self.detach_loops()
        for name in ('etc', 'data', 'pids', 'ovs', 'mysql', 'rabbitmq'):
            shutil.rmtree(self.path(name), ignore_errors=True)
        for host in self.hosts:
            shutil.rmtree(host.root, ignore_errors=True)
        shutil.rmtree(self.path('tempest'), ignore_errors=True)
        for name in ('clouds.yaml', 'openrc', 'mysql.pid',
                     'tempest-ids.json', 'tempest-workspaces.yaml'):
            if os.path.exists(self.path(name)):
                os.unlink(self.path(name))
        left = self.leftover_processes()
        if left:
            raise SystemExit('cloud: processes left: %s' % left)
        took = time.monotonic() - t0
        log('down in %.0f s; logs kept in %s' % (took, self.logs))

    def status(self):
        if not os.path.isdir(self.pids):
            log('not running')
            return 1
        rc = 0
        for name in sorted(os.listdir(self.pids)):
            name = name[:-4]
            up = self.alive(name)
            rc = rc or (0 if up else 1)
            state = 'up' if up else 'DOWN'
            print('%-20s %-6s pid %s' % (name, state, self.pid_of(name)))
        return rc


def main(argv=None):
    parser = argparse.ArgumentParser(prog='tools/cloud.sh')
    parser.add_argument('--work', default=os.environ.get(
        'NOVA_OPENVZ_CLOUD_DIR', os.path.join(ROOT, '.cloud', 'run')))
    sub = parser.add_subparsers(dest='action', required=True)
    up = sub.add_parser('up', help='start the cloud and leave it running')
    up.add_argument('--image', choices=('busybox', 'debian'),
                    default=os.environ.get('NOVA_OPENVZ_CLOUD_IMAGE',
                                           'busybox'))
    # Two by default: the second host adds about 5 s to up and 15 s to
    # down, and Tempest's migration tests need it.
    up.add_argument('--computes', type=int,
                    choices=range(1, MAX_COMPUTES + 1),
                    default=int(os.environ.get('NOVA_OPENVZ_CLOUD_COMPUTES',
                                               MAX_COMPUTES)),
                    help='compute hosts (default 2; Tempest\'s migration '
                         'tests need two)')
    up.add_argument('--routers', action='store_true',
                    default=os.environ.get('NOVA_OPENVZ_CLOUD_ROUTERS') == '1',
                    help='run Neutron\'s L3 agent on the first host: '
                         'routers and floating IPs that carry traffic, and '
                         'Tempest on project networks of its own')
    sub.add_parser('down', help='stop everything and clean up')
    sub.add_parser('status', help='which services run')
    sub.add_parser('env', help='print OS_* lines for the openstack client')
    sub.add_parser('demo', help='boot two servers; the second pings the '
                   'first; delete them')
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit('cloud: run as root (the simulated host, MariaDB '
                         'and RabbitMQ state, Open vSwitch)')
    cloud = Cloud(args.work)
    if args.action == 'up':
        try:
            cloud.up(args.image, args.computes, args.routers)
        except BaseException:
            log('start failed; logs in %s; tearing down' % cloud.logs)
            if os.environ.get('NOVA_OPENVZ_CLOUD_KEEP') != '1':
                cloud.down()
            raise
    elif args.action == 'down':
        cloud.down()
    elif args.action == 'status':
        return cloud.status()
    elif args.action == 'env':
        print(cloud.openrc(), end='')
    elif args.action == 'demo':
        cloud.demo()
    return 0


if __name__ == '__main__':
    sys.exit(main())
