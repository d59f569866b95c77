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

"""Test fixtures for the simulated OpenVZ host.

:class:`SimulatedHostFixture` is the product fixture of
:mod:`nova_openvz.testing.fixtures` (a fresh host in a temporary directory,
``[openvz]`` options pointing at it, fault/latency injection, the call log
and ``run()`` of the real wrapper executables) plus what the simulator's
own tests need: OS templates in the host's cache and config reading.
"""

import io
import os
import shutil
import subprocess
import tarfile

from nova_openvz.privsep import vzconf
from nova_openvz.testing import fixtures as sim_fixture
from vzsim import templates

DEFAULT_TEMPLATE = 'centos-6-x86'


def host_shell_files():
    """``{path in guest: host path}`` of a working /bin/sh and its libraries.

    Empty when this machine has no dynamically linked dash and ldd, in
    which case tests that run commands inside a container are skipped.
    """
    shell = shutil.which('dash')
    if not shell or not shutil.which('ldd'):
        return {}
    files = {'bin/sh': os.path.realpath(shell)}
    out = subprocess.run(['ldd', shell], capture_output=True, text=True,
                         check=False).stdout
    for line in out.splitlines():
        path = [w for w in line.split() if w.startswith('/')]
        if path:
            files[path[0].lstrip('/')] = os.path.realpath(path[0])
    return files


def build_template(path, shell=False, extra=None):
    """Write a small gzip OS template tarball to ``path``.

    It holds the minimal template of :mod:`vzsim.templates`
    (sbin/init, bin/sh, etc/...); with ``shell`` its placeholder /bin/sh is
    replaced by this machine's dash and libraries so that ``vzctl exec``
    can run commands.  ``extra`` maps more guest paths to file contents.
    """
    replace = host_shell_files() if shell else {}
    extra = extra or {}
    source = tarfile.open(fileobj=io.BytesIO(
        templates.minimal_template_bytes()))
    with tarfile.open(path, 'w:gz') as tar:
        for member in source.getmembers():
            if member.name not in replace and member.name not in extra:
                tar.addfile(member, source.extractfile(member)
                            if member.isfile() else None)
        for name, host_path in sorted(replace.items()):
            tar.add(host_path, arcname=name)
        for name, data in sorted(extra.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


class SimulatedHostFixture(sim_fixture.SimulatedHostFixture):
    """A fresh simulated host with helpers for the simulator's tests."""

    def _setUp(self):
        super()._setUp()
        self.add_template()

    def path(self, relative):
        return os.path.join(self.root, relative)

    def add_template(self, name=DEFAULT_TEMPLATE, shell=False, ext='.gz',
                     extra=None):
        """Put a template tarball into the host's template cache."""
        return build_template(
            self.path('vz/template/cache/%s.tar%s' % (name, ext)),
            shell=shell, extra=extra)

    def conf_path(self, ctid):
        return self.path('etc/vz/conf/%s.conf' % ctid)

    def conf_text(self, ctid):
        with open(self.conf_path(ctid)) as f:
            return f.read()

    def ct_conf(self, ctid):
        """``<CTID>.conf`` parsed the way vzctl reads it."""
        return vzconf.read(self.conf_path(ctid))

    def vzctl(self, *args):
        """``run('vzctl', *args)``."""
        return self.run('vzctl', *args)
