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

"""What ``vzmigrate -r no`` leaves on the source host (reference 5.4).

An offline move that keeps the source's area renames the container's
config to ``<CTID>.conf.migrated``, so vzctl and vzlist no longer see it
while its private area stays, for a way back.  A revert or a confirm of
the move finds that config by the instance's UUID (its ``NAME``) and puts
it back as ``<CTID>.conf`` (then the container runs again, or is
destroyed with vzctl as any other).  Both act in vzctl's config
directory, through its descriptor, never following a link.
"""

import os
import re
import stat

from nova_openvz import privsep
from nova_openvz.privsep import containers
from nova_openvz.privsep import tools
from nova_openvz.privsep import vzconf

MIGRATED_SUFFIX = '.conf.migrated'
_MIGRATED_RE = re.compile(r'^([0-9]{1,10})\.conf\.migrated\Z')


def _open_conf_dir():
    return os.open(privsep.paths().conf_dir, os.O_RDONLY | os.O_DIRECTORY |
                   os.O_CLOEXEC)


def _read_config(dir_fd, name):
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                 dir_fd=dir_fd)
    with os.fdopen(fd, encoding='utf-8', errors='replace') as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return {}
        return vzconf.parse(f.read())


def _kept_copies():
    """``{instance UUID: CT ID}`` of Nova's ``<CTID>.conf.migrated`` files."""
    found = {}
    dir_fd = _open_conf_dir()
    try:
        for name in sorted(os.listdir(dir_fd)):
            match = _MIGRATED_RE.match(name)
            if not match:
                continue
            try:
                privsep.check_ctid(match.group(1))
                config = _read_config(dir_fd, name)
            except (privsep.ArgumentRejected, OSError):
                continue    # not Nova's, or a link: never ours
            uuid = config.get('NAME') or ''
            if privsep.UUID_RE.match(uuid):
                found.setdefault(uuid, int(match.group(1)))
        return found
    finally:
        os.close(dir_fd)


@privsep.vz_pctxt.entrypoint
def migrated_ctid(instance_uuid):
    """The CT ID whose ``<CTID>.conf.migrated`` is the instance's, or None."""
    if not isinstance(instance_uuid, str) or \
            not privsep.UUID_RE.match(instance_uuid):
        raise privsep.ArgumentRejected('%r is not an instance UUID'
                                       % (instance_uuid,))
    return _kept_copies().get(instance_uuid)


@privsep.vz_pctxt.entrypoint
def kept_copies():
    """``{instance UUID: CT ID}`` of every copy a move kept on this host."""
    return _kept_copies()


def _rename_config(source, target, ctid):
    """``source`` becomes ``target`` in vzctl's config directory.

    Refused when ``target`` exists: nothing is overwritten.
    """
    dir_fd = _open_conf_dir()
    try:
        info = os.stat(source, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISREG(info.st_mode):
            raise privsep.ArgumentRejected('%s is not a file' % source)
        try:
            # A link, not a rename: it never replaces an existing file.
            os.link(source, target, src_dir_fd=dir_fd, dst_dir_fd=dir_fd,
                    follow_symlinks=False)
        except FileExistsError:
            raise privsep.ArgumentRejected(
                'container %d has a %s already' % (ctid, target))
        os.unlink(source, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


@privsep.vz_pctxt.entrypoint
def restore_migrated_config(ctid):
    """Rename ``<CTID>.conf.migrated`` back to ``<CTID>.conf``.

    Refused when the container has a config already (it came back, or
    the ID was taken since).
    """
    privsep.check_ctid(str(int(ctid)))
    _rename_config('%d%s' % (int(ctid), MIGRATED_SUFFIX),
                   '%d.conf' % int(ctid), int(ctid))


@privsep.vz_pctxt.entrypoint
def hide_config(ctid):
    """Rename ``<CTID>.conf`` to ``<CTID>.conf.migrated`` again.

    Undoes :func:`restore_migrated_config` when the step after it (the
    removal of a confirmed move's source) fails: the copy stays out of
    vzctl's and Nova's sight, for a later clean-up.  Only a container
    whose config says it is Nova's is hidden.
    """
    ctid = containers.check_nova_ctid(ctid)
    _rename_config('%d.conf' % ctid, '%d%s' % (ctid, MIGRATED_SUFFIX), ctid)


@privsep.vz_pctxt.entrypoint
def stop_migration(ctid):
    """Stop the vzmigrate this helper runs for container ``ctid``.

    Only a vzmigrate this helper started (through the table of commands)
    is signalled, never a process found by its name.

    :returns: whether one was running.
    """
    privsep.check_ctid(str(int(ctid)))
    return tools.stop_vzmigrate(int(ctid))
