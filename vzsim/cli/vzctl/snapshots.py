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

"""``vzctl snapshot*`` and ``compact``: ploop containers' disk commands.

Reference 1.10 and 1.11.
"""

import os
import shutil
import sys
import time

from vzsim.cli.vzctl import common
from vzsim.cli.vzctl.common import E_CREATE_SNAPSHOT
from vzsim.cli.vzctl.common import E_DELETE_SNAPSHOT
from vzsim.cli.vzctl.common import E_LIST_SNAPSHOT
from vzsim.cli.vzctl.common import E_MOUNT_SNAPSHOT
from vzsim.cli.vzctl.common import E_SWITCH_SNAPSHOT
from vzsim.cli.vzctl.common import E_SYNTAX
from vzsim.cli.vzctl.common import E_UMOUNT_SNAPSHOT
from vzsim.cli.vzctl.common import E_VALUE
from vzsim.cli.vzctl.common import Failure
from vzsim import hostfs


def cmd_compact(call):
    call.require_root()
    call.require_private()
    if call.layout() != 'ploop':
        call.out.info('Compact only makes sense for ploop containers')
    return 0


SNAPSHOT_SPEC = {'id': True, 'uuid': True, 'name': True, 'description': True,
                 'skip-suspend': False, 'skip-config': False}
SWITCH_SPEC = {'id': True, 'uuid': True, 'skip-resume': False,
               'must-resume': False, 'skip-config': False}
ID_SPEC = {'id': True, 'uuid': True}
MOUNT_SPEC = {'id': True, 'uuid': True, 'target': True}
SNAPSHOT_FIELDS = {
    # field -> (header, width)
    'parent_uuid': ('PARENT_UUID', 38), 'current': ('C', 1),
    'uuid': ('UUID', 38), 'date': ('DATE', 19), 'name': ('NAME', 32),
    'desc': ('DESCRIPTION', 32), 'device': ('DEVICE', 16),
    'target': ('TARGET', 0),
}
SNAPSHOT_ALIASES = {'id': 'uuid', 'parent_id': 'parent_uuid'}
DEFAULT_SNAPSHOT_FIELDS = ('parent_uuid', 'current', 'uuid', 'date', 'name')


def normalise_uuid(text):
    """``{xxxxxxxx-...}`` form of a UUID, or None when it is not one."""
    import uuid
    try:
        return '{%s}' % uuid.UUID(text.strip('{}'))
    except ValueError:
        return None


class SnapshotTree:
    """vzctl's ``<VE_PRIVATE>/Snapshots.xml`` (ParallelsSavedStates)."""

    def __init__(self, private):
        self.path = os.path.join(private, common.SNAPSHOTS_XML)
        import xml.etree.ElementTree as ElementTree
        self.et = ElementTree
        try:
            self.doc = ElementTree.parse(self.path).getroot()
        except FileNotFoundError:
            self.doc = ElementTree.Element('ParallelsSavedStates')
            ElementTree.SubElement(self.doc, 'SavedStateItem', guid='',
                                   current='no')

    def items(self):
        """``[(item, parent_guid)]`` of every snapshot, tree order."""
        found = []

        def walk(node, parent):
            for child in node.findall('SavedStateItem'):
                found.append((child, parent))
                walk(child, child.get('guid'))
        walk(self.doc.find('SavedStateItem'), '')
        return found

    def find(self, guid):
        for item, parent in self.items():
            if item.get('guid') == guid:
                return item, parent
        return None, None

    def current(self):
        for item, _ in self.items():
            if item.get('current') == 'yes':
                return item
        return None

    def _node(self, guid):
        if not guid:
            return self.doc.find('SavedStateItem')
        return self.find(guid)[0]

    def set_current(self, guid):
        for item, _ in self.items():
            item.set('current', 'yes' if item.get('guid') == guid else 'no')

    def add(self, guid, name, description):
        current = self.current()
        parent = current if current is not None else self._node('')
        item = self.et.SubElement(parent, 'SavedStateItem', guid=guid,
                                  current='no')
        for tag, text in (('Name', name), ('DateTime', time.strftime(
                '%Y-%m-%d %H:%M:%S')), ('Creator', 'vzctl'),
                          ('ScreenShot', ''), ('Description', description)):
            self.et.SubElement(item, tag).text = text
        self.set_current(guid)

    def remove(self, guid):
        item, parent_guid = self.find(guid)
        parent = self._node(parent_guid)
        index = list(parent).index(item)
        parent.remove(item)
        for offset, child in enumerate(item.findall('SavedStateItem')):
            parent.insert(index + offset, child)
        if item.get('current') == 'yes' and parent_guid:
            self.set_current(parent_guid)

    def save(self):
        self.et.indent(self.doc)
        text = self.et.tostring(self.doc, encoding='unicode')
        hostfs.write_atomic(self.path, '<?xml version="1.0" encoding="UTF-8"'
                                       '?>\n' + text + '\n')


def _snapshot_id(call, required=True):
    value = call.opt('id') or call.opt('uuid')
    if value is None:
        if required:
            raise Failure(E_SYNTAX, 'Invalid syntax: snapshot id is missing')
        return None
    guid = normalise_uuid(value)
    if guid is None:
        raise Failure(E_VALUE, 'Bad parameter for --id: %s' % value)
    return guid


def _require_ploop(call, code):
    """The parsed DiskDescriptor.xml of a ploop CT (snapshot commands)."""
    if call.layout() != 'ploop':
        raise Failure(code, 'Snapshot feature is only available for '
                            'ploop-based CTs')
    return common.ploop_do(code, common.ploop_lib().read_descriptor,
                           call.host.disk_descriptor(call.ctid))


def cmd_snapshot(call):
    import uuid
    private = call.require_private()
    descriptor = _require_ploop(call, E_CREATE_SNAPSHOT)
    guid = _snapshot_id(call, required=False) or '{%s}' % uuid.uuid4()
    tree = SnapshotTree(private)
    if tree.find(guid)[0] is not None:
        raise Failure(E_CREATE_SNAPSHOT, 'Snapshot %s already exists' % guid)
    out, kernel, ctid = call.out, call.kernel, call.ctid
    out.info('Creating snapshot %s' % guid)
    dump_dir = os.path.join(private, 'dump')
    os.makedirs(dump_dir, exist_ok=True)
    running = call.running()
    frozen = False
    if running and not call.opt('skip-suspend'):
        kernel.freeze(ctid)
        frozen = True
    try:
        common.ploop_do(E_CREATE_SNAPSHOT, common.ploop_lib().snapshot,
                        descriptor, guid)
        if frozen:
            kernel.dump(ctid, os.path.join(dump_dir, guid))
    finally:
        if frozen:
            kernel.thaw(ctid)
    if not call.opt('skip-config'):
        shutil.copyfile(call.conf_path,
                        os.path.join(dump_dir, guid + '.ve.conf'))
    tree.add(guid, call.opt('name') or '', call.opt('description') or '')
    out.info('Storing %s' % tree.path)
    tree.save()
    out.info('Snapshot %s has been successfully created' % guid)
    return 0


def cmd_snapshot_switch(call):
    guid = _snapshot_id(call)
    if call.opt('skip-resume') and call.opt('must-resume'):
        raise Failure(E_SYNTAX, 'Invalid syntax: --skip-resume and '
                                '--must-resume are mutually exclusive')
    private = call.require_private()
    descriptor = _require_ploop(call, E_SWITCH_SNAPSHOT)
    tree = SnapshotTree(private)
    if tree.find(guid)[0] is None:
        raise Failure(E_SWITCH_SNAPSHOT, 'Unable to find snapshot by uuid %s'
                      % guid)
    dump = os.path.join(private, 'dump', guid)
    resume = os.path.exists(dump) and not call.opt('skip-resume')
    if call.opt('must-resume') and not resume:
        raise Failure(E_SWITCH_SNAPSHOT, 'Unable to resume: snapshot %s has '
                                         'no memory dump' % guid)
    out, kernel, ctid = call.out, call.kernel, call.ctid
    out.info('Switching to snapshot %s' % guid)
    if call.running():
        kernel.stop(ctid, fast=True)
    if call.mounted():
        call.umount()
    common.ploop_do(E_SWITCH_SNAPSHOT, common.ploop_lib().switch,
                    descriptor, guid)
    saved_conf = os.path.join(private, 'dump', guid + '.ve.conf')
    if not call.opt('skip-config') and os.path.exists(saved_conf):
        shutil.copyfile(saved_conf, call.conf_path)
    tree.set_current(guid)
    tree.save()
    if resume:
        call.mount()
        kernel.restore(ctid, dump)
    out.info('Snapshot %s has been successfully switched' % guid)
    return 0


def cmd_snapshot_delete(call):
    guid = _snapshot_id(call)
    private = call.require_private()
    descriptor = _require_ploop(call, E_DELETE_SNAPSHOT)
    tree = SnapshotTree(private)
    if tree.find(guid)[0] is None:
        raise Failure(E_DELETE_SNAPSHOT, 'Unable to find snapshot by uuid %s'
                      % guid)
    call.out.info('Deleting snapshot %s' % guid)
    common.ploop_do(E_DELETE_SNAPSHOT, common.ploop_lib().delete,
                    descriptor, guid, mounted=call.mounted())
    for leftover in (guid, guid + '.ve.conf'):
        path = os.path.join(private, 'dump', leftover)
        if os.path.exists(path):
            os.unlink(path)
    tree.remove(guid)
    call.out.info('Storing %s' % tree.path)
    tree.save()
    call.out.info('Snapshot %s has been successfully deleted' % guid)
    return 0


def cmd_snapshot_mount(call):
    guid = _snapshot_id(call)
    target = call.opt('target')
    if not target:
        raise Failure(E_SYNTAX, 'Invalid syntax: --target is missing')
    private = call.require_private()
    descriptor = _require_ploop(call, E_MOUNT_SNAPSHOT)
    if SnapshotTree(private).find(guid)[0] is None:
        raise Failure(E_MOUNT_SNAPSHOT, 'Unable to find snapshot by uuid %s'
                      % guid)
    common.ploop_command(E_MOUNT_SNAPSHOT, call.host,
                         ['mount', '-r', '-u', guid, '-m', target,
                          descriptor.path])
    return 0


def cmd_snapshot_umount(call):
    guid = _snapshot_id(call)
    private = call.require_private()
    descriptor = _require_ploop(call, E_UMOUNT_SNAPSHOT)
    if SnapshotTree(private).find(guid)[0] is None:
        raise Failure(E_UMOUNT_SNAPSHOT, 'Unable to find snapshot by uuid %s'
                      % guid)
    ploop = common.ploop_lib()
    devices = [device for device, entry in ploop.devices(call.host)
               if entry['guid'] == guid and
               entry['descriptor'] == os.path.realpath(descriptor.path)]
    if not devices:
        raise Failure(E_UMOUNT_SNAPSHOT, 'Snapshot %s is not mounted' % guid)
    common.ploop_command(E_UMOUNT_SNAPSHOT, call.host,
                         ['umount', '-d', devices[0]])
    return 0


def snapshot_list_args(argv):
    """snapshot-list takes -H, -o LIST, --id UUID and -L."""
    spec = {'no-header': False, 'output': True, 'id': True, 'uuid': True,
            'list': False}
    short = {'-H': 'no-header', '-o': 'output', '-L': 'list'}
    expanded = []
    for arg in argv:
        if arg in short:
            expanded.append('--' + short[arg])
        elif arg.startswith('-o') and len(arg) > 2:
            expanded += ['--output', arg[2:]]
        else:
            expanded.append(arg)
    return common.getopt(expanded, spec)


def cmd_snapshot_list(call):
    if call.opt('list'):
        for field, (header, _) in SNAPSHOT_FIELDS.items():
            sys.stdout.write('%-15s %-15s\n' % (field, header))
        return 0
    fields = []
    for field in (call.opt('output') or
                  ','.join(DEFAULT_SNAPSHOT_FIELDS)).split(','):
        field = SNAPSHOT_ALIASES.get(field, field)
        if field not in SNAPSHOT_FIELDS:
            raise Failure(E_LIST_SNAPSHOT, 'Unknown field: %s' % field)
        fields.append(field)
    only = _snapshot_id(call, required=False)
    rows = []
    private = call.private
    if private and os.path.exists(os.path.join(private, common.SNAPSHOTS_XML)):
        for item, parent in SnapshotTree(private).items():
            if only and item.get('guid') != only:
                continue
            values = {'parent_uuid': parent, 'uuid': item.get('guid'),
                      'current': '*' if item.get('current') == 'yes' else '',
                      'date': item.findtext('DateTime') or '',
                      'name': item.findtext('Name') or '',
                      'desc': item.findtext('Description') or '',
                      'device': '', 'target': ''}
            rows.append(values)

    def line(values):
        cells = []
        for field in fields:
            width = SNAPSHOT_FIELDS[field][1]
            cells.append('%-*s' % (width, values[field][:width] if width
                                   else values[field]))
        return ' '.join(cells).rstrip()
    if not call.opt('no-header'):
        sys.stdout.write(line({f: SNAPSHOT_FIELDS[f][0]
                               for f in SNAPSHOT_FIELDS}) + '\n')
    for values in rows:
        sys.stdout.write(line(values) + '\n')
    return 0
