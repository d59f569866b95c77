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

"""Simulated ``ploop`` tool: its command line over :mod:`vzsim.kernel.ploop`.

Commands, options, messages and exit codes follow openvz-reference.md
section 6; the image work (descriptors, deltas, snapshots, devices) is the
back end's.
"""

import collections
import getopt
import os
import re
import sys

from vzsim import hostfs
from vzsim.kernel import backends
from vzsim.kernel import ploop
from vzsim.kernel.ploop import PloopError
from vzsim.kernel.ploop import SYSEXIT_DEV_INUSE
from vzsim.kernel.ploop import SYSEXIT_DEV_NOT_MOUNTED
from vzsim.kernel.ploop import SYSEXIT_MOUNT
from vzsim.kernel.ploop import SYSEXIT_PARAM


USAGE = '''\
Usage: ploop init -s SIZE [-f FORMAT] NEW_DELTA
       ploop mount [-r] [-m DIR] DiskDescriptor.xml
       ploop umount { -d DEVICE | -m DIR | DELTA | DiskDescriptor.xml }
       ploop resize -s SIZE DiskDescriptor.xml
       ploop snapshot DiskDescriptor.xml
       ploop snapshot-delete -u UUID DiskDescriptor.xml
       ploop snapshot-merge [-u UUID] DiskDescriptor.xml
       ploop snapshot-switch -u UUID DiskDescriptor.xml
       ploop snapshot-list [-o field[,field...]] [-u UUID] DiskDescriptor.xml
Also:  ploop { info | list | getdev } ...

       ploop <command> -- to get detailed syntax for a specific command'''

COMMAND_USAGE = {
    'init': 'Usage: ploop init -s SIZE [-f FORMAT] [-v VERSION] [-t FSTYPE]\n'
            '                 [-b BLOCKSIZE] [-B FSBLOCKSIZE] [-n|--nolazy] '
            'DELTA\n\n'
            '       SIZE        := NUMBER[KMGT]\n'
            '       FORMAT      := { raw | ploop1 | expanded | preallocated }'
            '\n       VERSION     := { 1 | 2 } (default 2, if supported)\n'
            '       FSTYPE      := { none | ext3 | ext4 } (create filesystem,'
            ' default ext4)',
    'mount': 'Usage: ploop mount [-r] [-m MOUNT_POINT] [-u UUID] '
             'DiskDescriptor.xml',
    'umount': 'Usage: ploop umount -d DEVICE\n'
              '       ploop umount -m DIR\n'
              '       ploop umount DiskDescriptor.xml\n'
              '       ploop umount DELTA',
    'resize': 'Usage: ploop resize -s NEW_SIZE DiskDescriptor.xml\n'
              '       NEW_SIZE := NUMBER[KMGT]',
    'info': 'Usage: ploop info [-s] [-d] DiskDescriptor.xml',
    'snapshot': 'Usage: ploop snapshot [-u UUID] DiskDescriptor.xml',
    'snapshot-merge': 'Usage: ploop snapshot-merge [-u UUID | -A] [-n DELTA] '
                      'DiskDescriptor.xml\n'
                      '       -u UUID       snapshot to merge (top delta if '
                      'not specified)',
    'snapshot-switch': 'Usage: ploop snapshot-switch -u UUID '
                       'DiskDescriptor.xml\n       UUID := snapshot UUID',
    'snapshot-delete': 'Usage: ploop snapshot-delete -u UUID '
                       'DiskDescriptor.xml\n       UUID := snapshot id',
    'snapshot-list': 'Usage: ploop snapshot-list [-H] [-o field[,field...]] '
                     '[-s] [-u <UUID>] \\\n'
                     '                           DiskDescriptor.xml',
    'list': 'Usage: ploop list [-a]',
    'restore-descriptor': 'Usage: ploop restore-descriptor [-f FORMAT] '
                          '[-b BLOCKSIZE] IMAGE_DIR BASE_DELTA\n'
                          '       FORMAT := { raw | ploop1 }\n'
                          '       BLOCKSIZE := block size in sectors (for '
                          'raw image format)\n'
                          '       IMAGE_DIR := directory where to place '
                          'DiskDescriptor.xml\n'
                          '       BASE_DELTA := path to image file',
    'getdev': 'Usage: ploop getdev\n'
              '(ask /dev/ploop0 about first unused minor number)',
}

#: snapshot-list fields: name -> (header, width).
LIST_FIELDS = collections.OrderedDict((
    ('uuid', ('UUID', 38)), ('parent_uuid', ('PARENT_UUID', 38)),
    ('current', ('C', 1)), ('fname', ('FNAME', 32))))
DEFAULT_LIST_FIELDS = 'parent_uuid,current,uuid,fname'
_LIST_OPTIONS = {'--no-header': 'H', '--output': 'o', '--help': 'h',
                 '--uuid': 'u', '--id': 'u', '--snapshot': 's'}
_SIZE_SUFFIX = {'': 1, 'k': 2, 'm': 2 * 1024, 'g': 2 * 1024 ** 2,
                't': 2 * 1024 ** 3}


def _say(message):
    sys.stdout.write(message + '\n')


def _usage_error(command, message=None):
    text = COMMAND_USAGE.get(command, USAGE)
    return PloopError(SYSEXIT_PARAM,
                      '%s\n%s' % (message, text) if message else text)


def _options(command, args, short, long=()):
    """GNU getopt of ``args``; a bad option ends with the usage (38)."""
    try:
        opts, rest = getopt.gnu_getopt(args, short, list(long))
    except getopt.GetoptError as exc:
        raise _usage_error(command, 'ploop: %s' % exc)
    return opts, rest


def _parse_size(text):
    """``-s`` value in sectors: NUMBER (sectors) or NUMBER[KMGT]."""
    match = re.match(r'^(0x[0-9a-fA-F]+|[0-9]+)([kmgtKMGT]?)$', text)
    if not match:
        raise PloopError(SYSEXIT_PARAM, 'ERROR: Invalid argument for option '
                                        '-s: %s' % text)
    return int(match.group(1), 0) * _SIZE_SUFFIX[match.group(2).lower()]


def _uuid_option(text):
    guid = ploop.normalize_guid(text)
    if guid is None:
        raise PloopError(SYSEXIT_PARAM, 'Incorrect uuid specified: %s' % text)
    return guid


def _is_xml(path):
    return path.endswith('.xml') or path.endswith('.qcow2')


def _xml_argument(command, rest):
    if len(rest) != 1 or not _is_xml(rest[0]):
        raise _usage_error(command)
    return os.path.abspath(rest[0])


def _mounted_target(host, descriptor_path):
    """``(device, mount point)`` of a mounted image, else ``(None, None)``.

    A container vzctl mounted counts too, even without a registered device.
    """
    with ploop.DeviceTable(host) as table:
        name = table.find(descriptor_path)
        if name:
            return '/dev/' + name, table.devices[name]['target']
    ctid = ploop.owner_ctid(host, descriptor_path, scan=False)
    if ctid is not None and host.runtime(ctid)['mounted']:
        return None, host.ve_root(ctid)
    return None, None


def _cmd_init(host, args):
    opts, rest = _options('init', args, 's:b:B:f:t:v:nk:', ['nolazy'])
    sectors, fmt, version = 0, 'expanded', 2
    blocksize = ploop.DEFAULT_BLOCKSIZE
    fstype = 'ext4'
    for opt, value in opts:
        if opt == '-s':
            sectors = _parse_size(value)
        elif opt == '-f':
            if value not in ploop.FORMATS:
                raise _usage_error('init', 'Bad -f argument: %s' % value)
            fmt = value
        elif opt == '-b':
            if not value.isdigit() or not int(value):
                raise _usage_error('init')
            blocksize = int(value)
        elif opt == '-v':
            if value not in ('1', '2'):
                raise _usage_error('init', 'Invalid -v argument: %s' % value)
            version = int(value)
        elif opt == '-t':
            if value not in ('none', 'ext3', 'ext4'):
                raise PloopError(SYSEXIT_PARAM, 'Incorrect file system type '
                                                'specified: %s' % value)
            fstype = value
    if len(rest) != 1 or sectors == 0:
        raise _usage_error('init')
    delta = os.path.abspath(rest[0])
    real = fstype != 'none' and backends.for_host(host).real
    ploop.create_image_sectors(os.path.dirname(delta), sectors, fmt,
                               os.path.basename(delta), blocksize, _say,
                               version, filesystem=real)
    return 0


def _link_mount(source, target, readonly):
    """Show ``source`` at ``target`` without a container kernel.

    A real image is loop-mounted; a modelled one is symlinked, as the
    modelled kernel mounts.
    """
    if os.path.isfile(source):
        from vzsim.kernel import real
        os.makedirs(target, exist_ok=True)
        try:
            real.loop_mount(source, target, readonly)
        except hostfs.ToolError as exc:
            raise PloopError(SYSEXIT_MOUNT, exc.message)
        return
    if os.path.islink(target):
        os.unlink(target)
    elif os.path.isdir(target):
        if os.listdir(target):
            raise PloopError(SYSEXIT_MOUNT,
                             'Mount point %s is not empty' % target)
        os.rmdir(target)
    elif os.path.exists(target):
        raise PloopError(SYSEXIT_MOUNT, "Can't mount on %s: not a directory"
                         % target)
    os.symlink(source, target)


def _cmd_mount(host, args):
    opts, rest = _options('mount', args, 'rFf:d:m:t:u:o:b:c:')
    options = dict(opts)
    path = _xml_argument('mount', rest)
    descriptor = ploop.read_descriptor(path)
    guid = descriptor.top_guid
    if '-u' in options:
        guid = (descriptor.chain(descriptor.top_guid)[-1]
                if options['-u'] == 'base' else _uuid_option(options['-u']))
        ploop.require_snapshot(descriptor, guid)
    snapshot_guid = None if guid == descriptor.top_guid else guid
    readonly = '-r' in options or snapshot_guid is not None
    if snapshot_guid is None:
        device, target = _mounted_target(host, path)
        if device or target:
            raise PloopError(SYSEXIT_DEV_INUSE, (
                'Image %s already used by device %s'
                % (descriptor.image_path(guid), device or target)))
    target = options.get('-m')
    device = ploop.attach(host, path, target and os.path.abspath(target),
                          snapshot_guid, readonly, options.get('-d'))
    chain = descriptor.chain(guid)
    for level, delta in enumerate(reversed(chain)):
        mode = 'rw' if level == len(chain) - 1 and not readonly else 'ro'
        _say('Adding delta dev=%s img=%s (%s)'
             % (device, descriptor.image_path(delta), mode))
    if target:
        target = os.path.abspath(target)
        source = ploop.mount_source(descriptor, snapshot_guid)
        _say("Mounting %sp1 at %s fstype=ext4 data='balloon_ino=12,'"
             % (device, target))
        ctid = ploop.owner_ctid(host, path)
        try:
            if ctid is not None and snapshot_guid is None:
                backends.for_host(host).mount(ctid, source, target)
            else:
                _link_mount(source, target, readonly)
        except hostfs.ToolError as exc:
            ploop.detach(host, device=device)
            raise PloopError(SYSEXIT_MOUNT, exc.message)
    return 0


def _cmd_umount(host, args):
    opts, rest = _options('umount', args, 'd:m:c:')
    options = dict(opts)
    if len(rest) != 1 and '-d' not in options and '-m' not in options:
        raise _usage_error('umount')
    with ploop.DeviceTable(host) as table:
        entries = table.devices.items()
    if '-d' in options:
        wanted = re.sub(r'(?<=[0-9])p1$', '', options['-d'])
        found = [(name, e) for name, e in entries
                 if '/dev/' + name == wanted]
        missing = 'Device %s is not mounted' % wanted
    elif '-m' in options:
        mount_point = os.path.abspath(options['-m'])
        found = [(name, e) for name, e in entries
                 if e['target'] == mount_point]
        missing = 'Unable to find ploop device by %s' % options['-m']
    else:
        path = os.path.abspath(rest[0])
        if not _is_xml(path):
            path = os.path.join(os.path.dirname(path), ploop.DESCRIPTOR_NAME)
        found = [(name, e) for name, e in entries
                 if e['descriptor'] == os.path.realpath(path) and
                 e['guid'] is None]
        missing = 'Image %s is not mounted' % rest[0]
        if not found:
            # vzctl mounted the container without a registered device.
            ctid = ploop.owner_ctid(host, path, scan=False)
            if ctid is not None and host.runtime(ctid)['mounted']:
                found = [(None, {'descriptor': path,
                                 'target': host.ve_root(ctid)})]
    if not found:
        code = SYSEXIT_PARAM if '-m' in options else SYSEXIT_DEV_NOT_MOUNTED
        raise PloopError(code, missing)
    name, entry = found[0]
    target = entry['target']
    if target:
        _say('Unmounting file system at %s' % target)
        ctid = ploop.owner_ctid(host, entry['descriptor'])
        if ctid is not None and host.ve_root(ctid) == target:
            backends.for_host(host).umount(ctid, target)
        elif os.path.islink(target):
            os.unlink(target)
            os.makedirs(target, exist_ok=True)
        else:
            from vzsim.kernel import real
            if real.is_mount_point(target):   # a real image
                real.umount(target)
    if name:
        _say('Unmounting device /dev/%s' % name)
        ploop.detach(host, device=name)
    return 0


def _cmd_resize(host, args):
    opts, rest = _options('resize', args, 's:b')
    sectors = 0
    for opt, value in opts:
        if opt == '-s':
            sectors = _parse_size(value)
    path = _xml_argument('resize', rest)
    if sectors == 0:
        raise _usage_error('resize')
    ploop.resize_sectors(ploop.read_descriptor(path), sectors, _say)
    return 0


def _cmd_info(host, args):
    opts, rest = _options('info', args, 'sd')
    options = dict(opts)
    path = _xml_argument('info', rest)
    descriptor = ploop.read_descriptor(path)
    if '-s' in options:
        _say('size:\t\t%d\nblocksize:\t%d\nfmt_version:\t2'
             % (descriptor.size, descriptor.blocksize))
    if '-d' in options:
        device = _mounted_target(host, path)[0] or ''
        _say('device:\t\t%s' % device)
    if not options:
        stats = ploop.fs_stats(descriptor)
        _say('%11s %14s %14s' % ('resource', 'Size', 'Used'))
        _say('%11s %14d %14d' % ('1k-blocks', stats.total_kb, stats.used_kb))
        _say('%11s %14d %14d' % ('inodes', stats.inodes, stats.inodes_used))
    return 0


def _cmd_snapshot(host, args):
    opts, rest = _options('snapshot', args, 'Fd:u:b:')
    guid = None
    for opt, value in opts:
        if opt == '-u':
            guid = _uuid_option(value)
    path = _xml_argument('snapshot', rest)
    ploop.snapshot(ploop.read_descriptor(path), guid, _say)
    return 0


def _cmd_snapshot_switch(host, args):
    opts, rest = _options('snapshot-switch', args, 'u:D')
    guids = [_uuid_option(value) for opt, value in opts if opt == '-u']
    path = _xml_argument('snapshot-switch', rest)
    if not guids:
        raise _usage_error('snapshot-switch')
    descriptor = ploop.read_descriptor(path)
    device, target = _mounted_target(host, path)
    ploop.switch(descriptor, guids[-1], mounted=device or target, log=_say)
    return 0


def _cmd_snapshot_delete(host, args):
    opts, rest = _options('snapshot-delete', args, 'u:')
    guids = [_uuid_option(value) for opt, value in opts if opt == '-u']
    path = _xml_argument('snapshot-delete', rest)
    if not guids:
        raise _usage_error('snapshot-delete')
    descriptor = ploop.read_descriptor(path)
    ploop.delete(descriptor, guids[-1],
                 mounted=any(_mounted_target(host, path)), log=_say)
    return 0


def _cmd_snapshot_merge(host, args):
    opts, rest = _options('snapshot-merge', args, 'u:n:A')
    options = dict(opts)
    if '-u' in options and '-A' in options:
        raise _usage_error('snapshot-merge',
                           "Options -u and -A can't be used together")
    if '-n' in options:
        raise PloopError(SYSEXIT_PARAM, 'Merging into a new delta (-n) is '
                                        'not supported by the simulated host')
    guid = _uuid_option(options['-u']) if '-u' in options else None
    if len(rest) != 1 or not _is_xml(rest[0]):
        raise _usage_error('snapshot-merge')
    ploop.merge(ploop.read_descriptor(os.path.abspath(rest[0])), guid,
                merge_all='-A' in options, log=_say)
    return 0


def _cmd_snapshot_list(host, args):
    """``ploop snapshot-list``; its failures all exit 1, as ploop's do."""
    try:
        opts, rest = getopt.gnu_getopt(
            args, 'Hho:u:s', ['no-header', 'output=', 'help', 'uuid=', 'id=',
                              'snapshot'])
    except getopt.GetoptError as exc:
        raise PloopError(1, 'ploop: %s\n%s'
                         % (exc, COMMAND_USAGE['snapshot-list']))
    options = {_LIST_OPTIONS.get(opt, opt[1:]): value for opt, value in opts}
    if 'h' in options:
        sys.stderr.write(COMMAND_USAGE['snapshot-list'] + '\n')
        return 0
    if not rest:
        raise PloopError(1, COMMAND_USAGE['snapshot-list'])
    try:
        descriptor = ploop.read_descriptor(os.path.abspath(rest[0]))
    except PloopError as exc:
        raise PloopError(1, 'failed to read %s: %s' % (rest[0], exc.message))
    fields = (options.get('o') or DEFAULT_LIST_FIELDS).split(',')
    for name in fields:
        if name.lower() not in LIST_FIELDS:
            raise PloopError(1, 'Unknown field: %s' % name)
    fields = [name.lower() for name in fields]
    snapshots = ploop.list_snapshots(descriptor)
    if 'u' in options:
        guid = ploop.normalize_guid(options['u'])
        if guid is None:
            raise PloopError(SYSEXIT_PARAM,
                             'Incorrect uuid specified: %s' % options['u'])
        if descriptor.shot(guid) is None:
            raise PloopError(1, "Can't find snapshot by uuid %s" % guid)
        chain = descriptor.chain(guid)
        snapshots = [s for s in snapshots if s.guid in chain]
        snapshots.sort(key=lambda s: chain.index(s.guid))
    current = descriptor.top_guid
    if 's' in options:
        # Snapshot mode: the top delta is hidden and its parent is current.
        current = descriptor.shot(descriptor.top_guid).parent
        snapshots = [s for s in snapshots if s.guid != descriptor.top_guid]
    lines = []
    if 'H' not in options:
        lines.append(''.join('%-*s ' % (LIST_FIELDS[name][1],
                                        LIST_FIELDS[name][0])
                             for name in fields))
    for item in snapshots:
        values = {'uuid': item.guid, 'parent_uuid': item.parent_guid,
                  'current': '*' if item.guid == current else '',
                  'fname': item.file}
        cells = ['%-*s ' % (LIST_FIELDS[name][1], values[name])
                 for name in fields[:-1]]
        lines.append(''.join(cells) + values[fields[-1]])
    sys.stdout.write(''.join(line + '\n' for line in lines))
    return 0


def _cmd_list(host, args):
    opts, rest = _options('list', args, 'a')
    if rest:
        raise _usage_error('list')
    show_mounts = bool(opts)
    for device, entry in ploop.devices(host):
        try:
            descriptor = ploop.read_descriptor(entry['descriptor'])
            chain = descriptor.chain(entry['guid'] or ploop.TOPDELTA_UUID)
            base = descriptor.image_path(chain[-1])
        except PloopError:
            base = entry['descriptor']
        mount_point = (entry['target'] or '') if show_mounts else ''
        _say('%-12s %s %s ' % (os.path.basename(device), base, mount_point))
    return 0


def _cmd_restore_descriptor(host, args):
    opts, rest = _options('restore-descriptor', args, 'f:b:')
    fmt, blocksize = 'ploop1', ploop.DEFAULT_BLOCKSIZE
    for opt, value in opts:
        if opt == '-f':
            if value not in ploop.FORMATS:
                raise _usage_error('restore-descriptor')
            fmt = value
        elif opt == '-b':
            if not value.isdigit() or not int(value):
                raise _usage_error('restore-descriptor')
            blocksize = int(value)
    if len(rest) != 2:
        raise _usage_error('restore-descriptor')
    ploop.restore_descriptor(rest[0], rest[1], fmt, blocksize, _say)
    return 0


def _cmd_getdev(host, args):
    if args:
        raise _usage_error('getdev')
    with ploop.DeviceTable(host) as table:
        number = table.next_free()
    _say('Next unused minor: %d' % (number << 4))
    return 0


COMMANDS = {
    'init': _cmd_init,
    'mount': _cmd_mount,
    'umount': _cmd_umount,
    'resize': _cmd_resize,
    'info': _cmd_info,
    'snapshot': _cmd_snapshot,
    'snapshot-switch': _cmd_snapshot_switch,
    'snapshot-delete': _cmd_snapshot_delete,
    'snapshot-merge': _cmd_snapshot_merge,
    'snapshot-list': _cmd_snapshot_list,
    'list': _cmd_list,
    'getdev': _cmd_getdev,
    'restore-descriptor': _cmd_restore_descriptor,
}


def run(host, argv):
    args = list(argv)
    # Global -v options (verbosity) come before the command.
    while args and args[0].startswith('-'):
        if not args[0].startswith('-v'):
            raise PloopError(SYSEXIT_PARAM,
                             'Bad option %s\n%s' % (args[0], USAGE))
        args.pop(0)
    if not args or args[0] not in COMMANDS:
        raise PloopError(SYSEXIT_PARAM, USAGE)
    return COMMANDS[args[0]](host, args[1:])


def _ctid_of_call(host, argv):
    """The container a call is about, for fault rules naming a ``ctid``."""
    for arg in argv:
        if _is_xml(arg):
            return ploop.owner_ctid(host, os.path.abspath(arg), scan=False)
    return None


def main(root, argv):
    """Run ``ploop argv`` on the simulated host in ``root``."""
    host = hostfs.Host(root)
    return hostfs.run_tool(host, 'ploop', argv, run,
                           command=hostfs.first_word(argv),
                           ctid=_ctid_of_call(host, argv))
