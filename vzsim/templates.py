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

"""Small OS template tarballs for the simulated host.

A template is a gzip tar of a root filesystem, the format of OpenVZ's
template cache.  Two are built here:

* the *minimal* template has the files vzctl expects of a guest
  (``/sbin/init``, ``/bin/sh``, ``/etc``) but no programs: enough for the
  modelled kernel, which runs nothing;
* the *busybox* template (:func:`busybox_template_bytes`) is a working
  guest for the real kernel: Debian's static busybox with its applets,
  busybox init, and a boot script that mounts what the host gives it
  (``/proc``, ``/sys``, ``/dev/pts``, ``/etc/fstab``), takes the hostname
  from ``/etc/hostname``, brings up the interfaces of
  ``/etc/network/interfaces`` (``ifup -a``) and runs until halted.

* the *debian* template (:func:`build_debian_template`, opt-in: it needs
  root, ``debootstrap`` and a Debian mirror, and takes minutes) is a
  ``debootstrap --variant=minbase`` Debian with cloud-init, ifupdown,
  iproute2, ping and an SSH server.  Its ``/sbin/init`` is a small shell
  script, not systemd: it mounts what the system needs, runs cloud-init's
  stages in the order of cloud-init's systemd units, starts sshd and
  waits to be halted.

Build a busybox template from the installed binary or from the package,
or a Debian one::

  python -m vzsim.templates busybox OUT.tar.gz \
      [--busybox /bin/busybox | --deb busybox-static_*.deb]
  python -m vzsim.templates debian OUT.tar.gz \
      [--suite bookworm] [--mirror http://deb.debian.org/debian]
"""

import glob
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile

_INIT = b"""#!/bin/sh
# Minimal init of the nova-openvz test template: say hello, then wait.
echo "nova-openvz minimal template: init started on $(hostname)"
trap 'exit 0' TERM INT
while :; do sleep 3600 & wait $!; done
"""

_FILES = {
    'sbin/init': (_INIT, 0o755),
    'bin/sh': (b'#!/bin/false\n# placeholder: the real shell comes from '
               b'the busybox template\n', 0o755),
    'etc/hostname': (b'localhost\n', 0o644),
    'etc/hosts': (b'127.0.0.1 localhost\n', 0o644),
    'etc/os-release': (b'ID=nova-openvz-minimal\nNAME="nova-openvz minimal '
                       b'template"\nVERSION_ID=1\n', 0o644),
    'etc/resolv.conf': (b'', 0o644),
}
_DIRS = ('bin', 'sbin', 'etc', 'dev', 'proc', 'sys', 'tmp', 'root', 'var',
         'var/log', 'run')


def _tarball(directories, files, links=()):
    """A gzip tarball of directories, files and symlinks.

    ``files`` maps names to ``(data, mode)``; ``links`` holds
    ``(name, target)`` pairs.
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w:gz', format=tarfile.GNU_FORMAT) \
            as tar:
        for directory in directories:
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if directory == 'tmp' else \
                0o700 if directory == 'root' else 0o755
            tar.addfile(info)
        for name, (data, mode) in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))
        for name, target in sorted(links):
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buf.getvalue()


def minimal_template_bytes():
    """Return a reproducible gzip tarball of the minimal root filesystem."""
    return _tarball(_DIRS, _FILES)


def write_minimal_template(path):
    with open(path, 'wb') as f:
        f.write(minimal_template_bytes())
    return path


# -- the busybox template ----------------------------------------------------

BUSYBOX = '/bin/busybox'

_RCS = b"""#!/bin/sh
# Boot of the nova-openvz busybox template.
mounted() { grep -q " $1 " /proc/mounts 2>/dev/null; }
[ -e /proc/self ] || mount -t proc proc /proc
mounted /sys || mount -t sysfs -o ro sysfs /sys
if ! mounted /dev/pts; then
    mkdir -p /dev/pts
    mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
fi
mount -a
[ -s /etc/hostname ] && hostname -F /etc/hostname
ip link set lo up
mkdir -p /run
ifup -a
echo "nova-openvz busybox template: $(hostname) is up"
"""
_RCK = b"""#!/bin/sh
# Shutdown of the nova-openvz busybox template.
ifdown -a
echo "nova-openvz busybox template: $(hostname) halts"
"""
_BUSYBOX_FILES = {
    # A root shell reads what is typed on the console (no getty, no
    # login: the simulated console has no tty).
    'etc/inittab': (b'::sysinit:/etc/init.d/rcS\n'
                    b'::respawn:/bin/sh\n'
                    b'::shutdown:/etc/init.d/rcK\n', 0o644),
    'etc/init.d/rcS': (_RCS, 0o755),
    'etc/init.d/rcK': (_RCK, 0o755),
    'etc/network/interfaces': (b'# ifup -a brings up the "auto" interfaces '
                               b'at boot (lo is up already)\n', 0o644),
    'etc/fstab': (b'', 0o644),
    'etc/hostname': (b'localhost\n', 0o644),
    'etc/hosts': (b'127.0.0.1 localhost\n', 0o644),
    'etc/resolv.conf': (b'', 0o644),
    'etc/passwd': (b'root:x:0:0:root:/root:/bin/sh\n', 0o644),
    'etc/shadow': (b'root:*:19000:0:99999:7:::\n', 0o600),
    'etc/group': (b'root:x:0:\n', 0o644),
    'etc/os-release': (b'ID=nova-openvz-busybox\nNAME="nova-openvz busybox '
                       b'template"\nVERSION_ID=1\n', 0o644),
}
_BUSYBOX_DIRS = ('bin', 'sbin', 'usr', 'usr/bin', 'usr/sbin', 'etc',
                 'etc/init.d', 'etc/network', 'etc/network/if-pre-up.d',
                 'etc/network/if-up.d', 'etc/network/if-down.d',
                 'etc/network/if-post-down.d', 'dev', 'proc', 'sys', 'tmp',
                 'root', 'home', 'mnt', 'run', 'var', 'var/log')


def busybox_from_deb(deb, directory):
    """Unpack ``bin/busybox`` of a busybox(-static) .deb into ``directory``.

    A .deb is an ar archive whose ``data.tar.*`` member holds the files.
    """
    with open(deb, 'rb') as f:
        if f.read(8) != b'!<arch>\n':
            raise ValueError('%s is not a Debian package' % deb)
        while True:
            header = f.read(60)
            if len(header) < 60:
                raise ValueError('%s has no data.tar member' % deb)
            name = header[:16].decode().strip().rstrip('/')
            size = int(header[48:58])
            data = f.read(size + size % 2)[:size]
            if name.startswith('data.tar'):
                break
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.getmember('./bin/busybox')
        path = os.path.join(directory, 'busybox')
        with open(path, 'wb') as out:
            out.write(tar.extractfile(member).read())
    os.chmod(path, 0o755)
    return path


def busybox_template_bytes(busybox=BUSYBOX):
    """A gzip tarball of a busybox guest (see the module docstring).

    ``busybox`` is a static busybox binary runnable here, which is asked
    for the list of its applets.
    """
    applets = subprocess.run([busybox, '--list-full'], capture_output=True,
                             text=True, check=True).stdout.split()
    with open(busybox, 'rb') as f:
        files = dict(_BUSYBOX_FILES, **{'bin/busybox': (f.read(), 0o755)})
    links = [(path, os.path.relpath('bin/busybox', os.path.dirname(path)))
             for path in applets if path not in files]
    return _tarball(_BUSYBOX_DIRS, files, links + [('var/run', '../run')])


# -- the Debian template (debootstrap, cloud-init) ---------------------------

DEBIAN_SUITE = 'bookworm'
DEBIAN_MIRROR = 'http://deb.debian.org/debian'
#: Installed on top of minbase.  python3-cffi-backend is named because
#: debootstrap's resolver does not follow the virtual package
#: (python3-cffi-backend-api-*) that cloud-init's python3-cryptography
#: needs, and leaves cloud-init unconfigured without it; cloud-init's
#: locale module runs locale-gen and update-locale (locales).  The SSH
#: server is how users (and Tempest's validation) log in with the key
#: cloud-init takes from the config drive, as its default user, whom
#: cloud-init gives sudo rights.
DEBIAN_PACKAGES = ('cloud-init', 'ifupdown', 'iproute2', 'iputils-ping',
                   'python3-cffi-backend', 'locales', 'openssh-server',
                   'sudo')

#: /sbin/init of the Debian template.  cloud-init's systemd units order
#: its stages around the network; here one script does it in that order,
#: since the simulated host gives a container no cgroup setup systemd
#: could run on as PID 1.
_DEBIAN_INIT = b"""#!/bin/sh
# /sbin/init of the nova-openvz Debian template (not systemd): mount what
# the system needs, run cloud-init's stages in the order of its systemd
# units, log to /var/log/nova-openvz-init.log and the console, then wait
# for halt (SIGTERM).
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
LOG=/var/log/nova-openvz-init.log

say() { echo "nova-openvz-init: $*" | tee -a "$LOG"; }

# Run a command, its output into the log and onto the console.
stage() {
    say "running: $*"
    { "$@" 2>&1; echo $? >/run/nova-openvz-init.rc; } | tee -a "$LOG"
    say "exit $(cat /run/nova-openvz-init.rc): $*"
}

mounted() { grep -q " $1 " /proc/mounts 2>/dev/null; }

# The init.d scripts the template starts at boot after cloud-init, in
# this order, and stops at halt in the reverse one (databases flush there).
services() { grep -v '^#' /etc/nova-openvz/services 2>/dev/null; }

halt_now() {
    say "halting"
    for service in $(services | tac); do
        stage "/etc/init.d/$service" stop
    done
    ifdown -a --force >>"$LOG" 2>&1
    kill -TERM -1 2>/dev/null
    sleep 1
    kill -KILL -1 2>/dev/null
    exit 0
}
trap halt_now TERM INT

[ -e /proc/self ] || mount -t proc proc /proc
mounted /sys || mount -t sysfs -o ro sysfs /sys
mounted /run || mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mkdir -p /run/lock /run/network
mounted /dev/pts || {
    mkdir -p /dev/pts
    mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
}
# POSIX shared memory (PostgreSQL's dynamic shared memory lives here).
mounted /dev/shm || {
    mkdir -p /dev/shm
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
}
mount -a 2>>"$LOG"
[ -s /etc/hostname ] && hostname "$(cat /etc/hostname)"
ip link set lo up
say "$(hostname) boots"

# What cloud-init's systemd generator does: ds-identify picks the
# datasources (a /config-drive directory holding openstack/<date>/
# meta_data.json counts) or disables cloud-init when there is none.
if /usr/lib/cloud-init/ds-identify >>"$LOG" 2>&1; then
    stage cloud-init init --local
    stage ifup -a
    stage cloud-init init
    stage cloud-init modules --mode=config
    stage cloud-init modules --mode=final
else
    say "ds-identify found no datasource: cloud-init stays disabled"
    stage ifup -a
fi
# A server cloud-init did not set up (no datasource) still gets SSH host
# keys of its own (ssh-keygen -A makes only the missing ones).
if [ -d /etc/ssh ] && ! ls /etc/ssh/ssh_host_*_key >/dev/null 2>&1; then
    stage ssh-keygen -A
fi
for service in $(services); do
    stage "/etc/init.d/$service" start
done
say "$(hostname) is up"

while :; do
    sleep 2147483647 &
    wait $!
done
"""

#: /sbin/halt of the Debian template (minbase has none): vzctl stop runs
#: halt inside the container; init does the rest.
_DEBIAN_HALT = b"""#!/bin/sh
# halt of the nova-openvz Debian template: ask init (PID 1) to stop.
kill -TERM 1
"""

#: cloud-init settings for a container: the disk is vzctl's business,
#: and Debian's locale-gen ignores the locale cloud-init asks for (its
#: default en_US.UTF-8 is not generated), while C.UTF-8 is built in.
_DEBIAN_CLOUD_CFG = b"""\
# nova-openvz Debian template: vzctl sizes a container's disk
# (DISKSPACE); there is no partition to grow.
growpart:
  mode: 'off'
resize_rootfs: false
# glibc's built-in locale; others need an entry in /etc/locale.gen first.
locale: C.UTF-8
"""


#: The init.d scripts the Debian template's init starts after cloud-init.
_DEBIAN_SERVICES = b'# started after cloud-init, stopped first at halt\nssh\n'


def _mounts_under(root):
    """Mount points at or below ``root``, deepest first."""
    root = os.path.realpath(root)
    with open('/proc/self/mountinfo') as f:
        points = [line.split()[4] for line in f]
    return sorted((p for p in points
                   if p == root or p.startswith(root + '/')),
                  key=len, reverse=True)


def _write(root, name, data, mode):
    path = os.path.join(root, name)
    if os.path.lexists(path):
        os.unlink(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(data)
    os.chmod(path, mode)


def prepare_debian_root(root):
    """Turn a debootstrapped tree into the template's root filesystem."""
    _write(root, 'sbin/init', _DEBIAN_INIT, 0o755)
    if not os.path.lexists(os.path.join(root, 'sbin/halt')):
        _write(root, 'sbin/halt', _DEBIAN_HALT, 0o755)
    _write(root, 'etc/cloud/cloud.cfg.d/90_nova_openvz.cfg',
           _DEBIAN_CLOUD_CFG, 0o644)
    # Host facts debootstrap copied in, and what every container must
    # make its own: vzctl writes hostname and DNS at start.
    _write(root, 'etc/hostname', b'localhost\n', 0o644)
    _write(root, 'etc/resolv.conf', b'', 0o644)
    _write(root, 'etc/machine-id', b'', 0o444)
    # The package made host keys at build time: no two servers may share
    # them.  cloud-init's ssh module makes each server's own at first boot,
    # before init starts sshd.
    for name in glob.glob(os.path.join(root, 'etc/ssh/ssh_host_*')):
        os.unlink(name)
    _write(root, 'etc/nova-openvz/services', _DEBIAN_SERVICES, 0o644)
    for directory in ('var/cache/apt/archives', 'var/lib/apt/lists'):
        path = os.path.join(root, directory)
        for name in os.listdir(path) if os.path.isdir(path) else ():
            if os.path.isfile(os.path.join(path, name)) and name != 'lock':
                os.unlink(os.path.join(path, name))


def build_debian_template(output, suite=DEBIAN_SUITE, mirror=DEBIAN_MIRROR,
                          workdir=None, log=None, packages=DEBIAN_PACKAGES,
                          prepare=prepare_debian_root):
    """Build the Debian template tarball ``output`` (see the docstring).

    Needs root and ``debootstrap``; ``workdir`` holds the temporary root
    filesystem (default: the system's temporary directory), ``log`` is a
    file object for debootstrap's output (default: inherited).
    ``packages`` go on top of minbase and ``prepare`` turns the tree into
    the template's root (templates built on this one pass their own).
    """
    import shutil
    if os.geteuid() != 0:
        raise RuntimeError('building the Debian template needs root '
                           '(debootstrap)')
    debootstrap = shutil.which('debootstrap')
    if not debootstrap:
        raise RuntimeError('debootstrap is not installed (bindep profile '
                           '"slow")')
    with tempfile.TemporaryDirectory(prefix='nova-openvz-debian-',
                                     dir=workdir) as tmp:
        root = os.path.join(tmp, 'root')
        try:
            subprocess.run([debootstrap, '--variant=minbase',
                            '--include=' + ','.join(packages),
                            suite, root, mirror], check=True,
                           stdout=log, stderr=subprocess.STDOUT if log
                           else None)
            prepare(root)
            partial = output + '.part'
            subprocess.run(['tar', '--numeric-owner', '-czf', partial,
                            '-C', root, '.'], check=True)
            os.replace(partial, output)
        finally:
            # debootstrap mounts /proc and /sys in the tree; a failed run
            # can leave them behind.
            for point in _mounts_under(root):
                subprocess.run(['umount', '-l', point], check=False)
    return output


# -- the PostgreSQL template (the Debian one with a database server) --------

#: Debian's PostgreSQL server (pg_ctlcluster, pg_test_fsync, pgbench),
#: its contrib modules, and what a guest needs to make and grow the data
#: volume's file system.
POSTGRESQL_PACKAGES = DEBIAN_PACKAGES + ('postgresql', 'postgresql-contrib',
                                         'e2fsprogs', 'procps')


def prepare_postgresql_root(root):
    """The Debian template's root, with PostgreSQL started by init.

    The package made a cluster ``main`` on the root disk and a snakeoil
    TLS key: each server makes its own cluster (on its data volume, from
    its user data), and no two servers may share a private key.
    """
    import shutil
    prepare_debian_root(root)
    for pattern in ('etc/postgresql/*/main', 'var/lib/postgresql/*/main'):
        for path in glob.glob(os.path.join(root, pattern)):
            shutil.rmtree(path)
    for name in ('etc/ssl/private/ssl-cert-snakeoil.key',
                 'etc/ssl/certs/ssl-cert-snakeoil.pem'):
        if os.path.lexists(os.path.join(root, name)):
            os.unlink(os.path.join(root, name))
    _write(root, 'etc/nova-openvz/services',
           _DEBIAN_SERVICES + b'postgresql\n', 0o644)


def build_postgresql_template(output, **kwargs):
    """Build the PostgreSQL template tarball (arguments as for Debian's)."""
    return build_debian_template(output, packages=POSTGRESQL_PACKAGES,
                                 prepare=prepare_postgresql_root, **kwargs)


BUILDERS = {'debian': build_debian_template,
            'postgresql': build_postgresql_template}

#: The environment variable that names another Debian mirror for builds.
MIRROR_ENV = 'NOVA_OPENVZ_DEBIAN_MIRROR'


def recipe_id():
    """A short digest of this builder: it changes whenever a recipe does.

    A template cache keyed by it never hands out a template built by an
    older recipe (another package list, another init).
    """
    with open(__file__, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()[:12]


def cached(directory, name, build):
    """``<directory>/<name>.tar.gz``, built by ``build`` if not there yet.

    The build (root, debootstrap, a Debian mirror: ``$NOVA_OPENVZ_DEBIAN_
    MIRROR`` or Debian's; minutes) logs to ``<name>.log`` beside it; one
    that fails raises, and the next call builds again.
    """
    os.makedirs(directory, exist_ok=True)
    tarball = os.path.join(directory, name + '.tar.gz')
    if not os.path.exists(tarball):
        with open(os.path.join(directory, name + '.log'), 'w') as log:
            build(tarball, mirror=os.environ.get(MIRROR_ENV) or
                  DEBIAN_MIRROR, log=log)
    return tarball


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(
        prog='python -m vzsim.templates',
        description='Build an OS template tarball for the simulated host.')
    parser.add_argument('kind', choices=('busybox', 'minimal', 'debian',
                                         'postgresql'))
    parser.add_argument('output', metavar='OUT.tar.gz')
    source = parser.add_mutually_exclusive_group()
    source.add_argument('--busybox', default=BUSYBOX,
                        help='static busybox binary (default %(default)s)')
    source.add_argument('--deb', help='a busybox-static .deb to take it from')
    parser.add_argument('--suite', default=DEBIAN_SUITE,
                        help='debian: the release (default %(default)s)')
    parser.add_argument('--mirror', default=DEBIAN_MIRROR,
                        help='debian: the archive (default %(default)s)')
    args = parser.parse_args(argv)
    if args.kind in BUILDERS:
        try:
            BUILDERS[args.kind](args.output, suite=args.suite,
                                mirror=args.mirror)
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            print('%s template not built: %s' % (args.kind, exc),
                  file=sys.stderr)
            return 1
        print('%s template written to %s' % (args.kind, args.output))
        return 0
    if args.kind == 'minimal':
        data = minimal_template_bytes()
    elif args.deb:
        with tempfile.TemporaryDirectory() as tmp:
            data = busybox_template_bytes(busybox_from_deb(args.deb, tmp))
    else:
        data = busybox_template_bytes(args.busybox)
    with open(args.output, 'wb') as f:
        f.write(data)
    print('%s template written to %s' % (args.kind, args.output))
    return 0


if __name__ == '__main__':
    sys.exit(main())
