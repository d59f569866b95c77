"""Small OS template tarballs for the simulated host.

A template is a gzip tar of a root filesystem, the format of OpenVZ's
template cache.  The minimal one built here has the files vzctl expects of
a guest (``/sbin/init``, ``/bin/sh``, ``/etc``) and an init that waits until
it is stopped; it is what the sandbox uploads to Glance and what the tests
boot.
"""

import io
import tarfile

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


def minimal_template_bytes():
    """Return a reproducible gzip tarball of the minimal root filesystem."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w:gz', format=tarfile.GNU_FORMAT) \
            as tar:
        for directory in _DIRS:
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if directory == 'tmp' else 0o755
            tar.addfile(info)
        for name, (data, mode) in sorted(_FILES.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_minimal_template(path):
    with open(path, 'wb') as f:
        f.write(minimal_template_bytes())
    return path
