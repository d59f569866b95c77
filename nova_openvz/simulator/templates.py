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

Build a busybox template from the installed binary or from the package::

  python -m nova_openvz.simulator.templates busybox OUT.tar.gz \
      [--busybox /bin/busybox | --deb busybox-static_*.deb]
"""

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
    'etc/inittab': (b'::sysinit:/etc/init.d/rcS\n'
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


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(
        prog='python -m nova_openvz.simulator.templates',
        description='Build an OS template tarball for the simulated host.')
    parser.add_argument('kind', choices=('busybox', 'minimal'))
    parser.add_argument('output', metavar='OUT.tar.gz')
    source = parser.add_mutually_exclusive_group()
    source.add_argument('--busybox', default=BUSYBOX,
                        help='static busybox binary (default %(default)s)')
    source.add_argument('--deb', help='a busybox-static .deb to take it from')
    args = parser.parse_args(argv)
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
