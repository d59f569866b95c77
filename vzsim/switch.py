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

"""A private Open vSwitch for the simulated host's networks.

Neutron's Open vSwitch deployments plug ports into an integration bridge;
this starts ``ovsdb-server`` and ``ovs-vswitchd`` of Debian's
openvswitch-switch package in a directory of its own, with the userspace
datapath (``datapath_type=netdev``), which needs no openvswitch kernel
module.  Traffic between two containers' veth devices on one of its bridges
is really switched, in ``ovs-vswitchd``.  Nothing of the machine's own Open
vSwitch (if any) is touched: the database, sockets, logs and pid files all
live in the directory.
"""

import os
import shutil
import signal
import subprocess
import time

SCHEMA = '/usr/share/openvswitch/vswitch.ovsschema'
TOOLS = ('ovsdb-tool', 'ovsdb-server', 'ovs-vswitchd', 'ovs-vsctl')


def available():
    """Why a private switch cannot run here, or None when it can."""
    missing = [tool for tool in TOOLS if not shutil.which(tool)]
    if missing:
        return 'missing %s (Debian package openvswitch-switch)' % \
            ', '.join(missing)
    if not os.path.exists(SCHEMA):
        return 'missing %s' % SCHEMA
    if os.geteuid() != 0:
        return 'not root'
    return None


class Switch(object):
    """One ovsdb-server and ovs-vswitchd serving ``directory``."""

    def __init__(self, directory):
        self.directory = directory
        self.db_socket = os.path.join(directory, 'db.sock')

    @property
    def connection(self):
        """The OVSDB connection string (os-vif's ``ovsdb_connection``)."""
        return 'unix:' + self.db_socket

    def _path(self, name):
        return os.path.join(self.directory, name)

    def _env(self):
        return dict(os.environ, OVS_RUNDIR=self.directory,
                    OVS_LOGDIR=self.directory, OVS_DBDIR=self.directory)

    def _run(self, *argv):
        proc = subprocess.run(argv, capture_output=True, text=True,
                              env=self._env(), check=False)
        if proc.returncode:
            raise RuntimeError('%s failed (%d): %s' % (
                ' '.join(argv), proc.returncode, proc.stderr.strip()))
        return proc.stdout

    def start(self):
        os.makedirs(self.directory, exist_ok=True)
        self._run('ovsdb-tool', 'create', self._path('conf.db'), SCHEMA)
        self._run('ovsdb-server', self._path('conf.db'),
                  '--remote=punix:' + self.db_socket,
                  '--pidfile=' + self._path('ovsdb-server.pid'),
                  '--unixctl=' + self._path('ovsdb-server.ctl'),
                  '--log-file=' + self._path('ovsdb-server.log'), '--detach')
        self.vsctl('--no-wait', 'init')
        self._run('ovs-vswitchd', self.connection,
                  '--pidfile=' + self._path('ovs-vswitchd.pid'),
                  '--unixctl=' + self._path('ovs-vswitchd.ctl'),
                  '--log-file=' + self._path('ovs-vswitchd.log'), '--detach')
        return self

    def running(self):
        """Whether both daemons of this directory are alive."""
        return all(_alive(self._path(name + '.pid'))
                   for name in ('ovsdb-server', 'ovs-vswitchd'))

    def vsctl(self, *args):
        return self._run('ovs-vsctl', '--db=' + self.connection,
                         '--timeout=30', *args)

    def add_bridge(self, name):
        """An integration bridge on the userspace datapath."""
        self.vsctl('--may-exist', 'add-br', name, '--', 'set', 'bridge',
                   name, 'datapath_type=netdev')

    def ports(self, bridge):
        return self.vsctl('list-ports', bridge).split()

    def interface(self, name, column):
        """One column of an Interface row, as ovs-vsctl prints it."""
        return self.vsctl('--if-exists', 'get', 'Interface', name,
                          column).strip()

    def stop(self):
        """Delete the bridges (their kernel devices), stop both daemons."""
        if os.path.exists(self.db_socket):
            try:
                for bridge in self.vsctl('list-br').split():
                    self.vsctl('--if-exists', 'del-br', bridge)
            except RuntimeError:
                pass
        for name in ('ovs-vswitchd', 'ovsdb-server'):
            _kill(self._path(name + '.pid'))


def _alive(pidfile):
    try:
        with open(pidfile) as f:
            os.kill(int(f.read().strip()), 0)
        return True
    except (OSError, ValueError):
        return False


def _kill(pidfile, timeout=10.0):
    try:
        with open(pidfile) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
