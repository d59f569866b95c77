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

"""vzctl's lifecycle commands (reference 1.2-1.6).

``create``, ``start``, ``stop``, ``restart``, ``status``, ``mount``,
``umount`` and ``destroy``/``delete``, and the start and stop steps other
commands reuse.
"""

import os
import shutil
import sys

from vzsim.cli.vzctl import common
from vzsim.cli.vzctl.common import E_CP_CONFIG
from vzsim.cli.vzctl.common import E_DISKSPACE_NOTSET
from vzsim.cli.vzctl.common import E_MOUNTED
from vzsim.cli.vzctl.common import E_NAME
from vzsim.cli.vzctl.common import E_NEW_PRVT
from vzsim.cli.vzctl.common import E_NOT_MOUNTED
from vzsim.cli.vzctl.common import E_OSTEMPLATE_NOT_FOUND
from vzsim.cli.vzctl.common import E_OSTEMPLATE_NOTSET
from vzsim.cli.vzctl.common import E_PRIVATE_NOTSET
from vzsim.cli.vzctl.common import E_PRVT_EXISTS
from vzsim.cli.vzctl.common import E_RESTORE
from vzsim.cli.vzctl.common import E_ROOT_NOTSET
from vzsim.cli.vzctl.common import E_RUNNING
from vzsim.cli.vzctl.common import E_START_DISABLED
from vzsim.cli.vzctl.common import E_SYNTAX
from vzsim.cli.vzctl.common import E_TMPL_NOTSET
from vzsim.cli.vzctl.common import E_UBC
from vzsim.cli.vzctl.common import E_VALUE
from vzsim.cli.vzctl.common import Failure
from vzsim.cli.vzctl import dists
from vzsim import conffile
from vzsim import hostfs


# -- start / stop -----------------------------------------------------------

def _required_ubc_missing(config):
    """A beancounter that start requires but ``config`` lacks, or None."""
    ubc = {}
    for name in hostfs.UBC_NAMES:
        text = config.get(name.upper())
        if text:
            ubc[name] = conffile.parse_ubc(name.upper(), text)
    ram = ubc.get('physpages', (0, conffile.LONG_MAX))[1]
    if ram not in (conffile.LONG_MAX, hostfs.INT_MAX):
        required = ('physpages', 'swappages')
    else:
        required = ('kmemsize', 'lockedpages', 'privvmpages', 'shmpages',
                    'numproc', 'physpages', 'vmguarpages', 'oomguarpages',
                    'numtcpsock', 'numflock', 'numpty', 'numsiginfo',
                    'tcpsndbuf', 'tcprcvbuf', 'othersockbuf', 'dgramrcvbuf',
                    'numothersock', 'dcachesize', 'numfile', 'numiptent')
    for name in required:
        if name not in ubc:
            return name
    return None


NETIF_KEYS = ('ifname', 'bridge', 'mac', 'host_ifname', 'host_mac',
              'mac_filter')


def netif_text(devices):
    return ';'.join(','.join('%s=%s' % (key, device[key])
                             for key in NETIF_KEYS if device.get(key))
                    for device in devices)


def apply_running(call, config, ips=True, cpu=True, veth=True, guest=True):
    """Apply ``config`` to a running container, saying what vzctl says."""
    kernel, ctid, out = call.kernel, call.ctid, call.out
    kernel.apply_resources(ctid, config)
    if ips:
        addresses = [common.ip_address(a) for a in
                     (config.get('IP_ADDRESS') or '').split()]
        if addresses:
            out.info('Adding IP address(es): %s' % ' '.join(addresses))
            kernel.add_ips(ctid, addresses)
    if cpu:
        out.info('Setting CPU units: %s' % (config.get('CPUUNITS') or
                                            common.DEFAULT_CPUUNITS))
        if config.get('CPULIMIT'):
            out.info('Setting CPU limit: %s' % config['CPULIMIT'])
        if config.get('CPUS'):
            out.info('Setting CPUs: %s' % config['CPUS'])
    if veth:
        devices = [d for d in conffile.netif_devices(config.get('NETIF'))
                   if d.get('host_ifname')]
        if devices:
            out.info('Configure veth devices: %s'
                     % ' '.join(d['host_ifname'] for d in devices))
            kernel.add_veth(ctid, devices)
    if guest:
        nameservers = (config.get('NAMESERVER') or
                       call.host.vz_conf.get('NAMESERVER'))
        searchdomains = config.get('SEARCHDOMAIN')
        dists.configure_guest(call.host, call.root,
                              hostname=config.get('HOSTNAME') or None,
                              nameservers=nameservers.split() if nameservers
                              else None,
                              searchdomains=(searchdomains.split()
                                             if searchdomains else None))
        kernel.set_hostname(ctid, config.get('HOSTNAME'))


def do_start(call, wait=False, force=False, skip_remount=False):
    config = call.config
    if config.get('DISABLED') == 'yes' and not force:
        raise Failure(E_START_DISABLED, 'Container start disabled')
    if call.running():
        raise Failure(E_RUNNING, 'Container is already running')
    call.require_private()
    dump = call.host.dump_file(call.ctid)
    if os.path.exists(dump):
        call.out.info('Dump file %s exists, trying to restore from it'
                      % dump)
        do_restore(call, dump)
        return 0
    missing = _required_ubc_missing(config)
    if missing:
        raise Failure(E_UBC, 'Error: required UB parameter %s not set'
                      % missing)
    if 'VE_LAYOUT' not in config:
        layout = call.layout()
        call.out.info("Saving VE layout '%s' to the VE config file" % layout)
        call.host.save_config(call.ctid, {'VE_LAYOUT': layout})
        config['VE_LAYOUT'] = layout
    call.out.info('Starting container...')
    if call.mounted() and not skip_remount:
        call.umount()
    if not call.mounted():
        call.mount()
    warning = dists.dist_warning(call.host, config)
    if warning:
        call.out.error(warning)
    call.kernel.start(call.ctid, config)
    try:
        apply_running(call, config)
        call.run_inside_script('start')
        call.kernel.finish_start(call.ctid)
    except hostfs.ToolError:
        call.kernel.stop(call.ctid, fast=True)
        call.umount()
        call.out.error('Container start failed')
        raise
    if wait:
        call.out.info('Container start in progress, waiting ...')
        call.out.info('Container started successfully')
    else:
        call.out.info('Container start in progress...')
    return 0


def do_stop(call, fast=False, skip_umount=False):
    if not call.running():
        call.out.error('Unable to stop: container is not running')
        return 0
    call.run_inside_script('stop')
    call.out.info('Stopping container ...')
    if fast:
        call.out.info('Killing container ...')
    call.kernel.stop(call.ctid, fast=fast)
    call.out.info('Container was stopped')
    if not skip_umount:
        call.umount()
    return 0


def do_restore(call, dumpfile):
    """Full restore from ``dumpfile``; the dump is removed on success."""
    if not os.path.exists(dumpfile):
        raise Failure(E_RESTORE, 'Unable to open %s: No such file or '
                                 'directory' % dumpfile)
    call.out.info('Restoring container ...')
    if not call.mounted():
        call.mount()
    call.out.info('\tundump...')
    call.kernel.restore(call.ctid, dumpfile)
    call.out.info('\tresume...')
    os.unlink(dumpfile)
    call.out.info('Restoring completed successfully')
    return 0


# -- commands ---------------------------------------------------------------

START_ONLY = {'force': False, 'skip_ve_setup': False, 'wait': False,
              'skip-fsck': False, 'skip-remount': False}
STOP_ONLY = {'fast': False, 'skip-umount': False}


def startstop_spec(start, stop):
    spec = dict(START_ONLY)
    spec.update(STOP_ONLY)

    def check(options):
        allowed = (START_ONLY if start else {}).keys() | \
            (STOP_ONLY if stop else {}).keys()
        for name, _ in options:
            if name not in allowed:
                sys.stderr.write('Option --%s is not applicable to %s '
                                 'command\n' % (name,
                                                'start' if start else 'stop'))
                raise Failure(E_SYNTAX)
    return spec, check


def cmd_start(call):
    return do_start(call, wait=bool(call.opt('wait')),
                    force=bool(call.opt('force')),
                    skip_remount=bool(call.opt('skip-remount')))


def cmd_stop(call):
    return do_stop(call, fast=bool(call.opt('fast')),
                   skip_umount=bool(call.opt('skip-umount')))


def cmd_restart(call):
    call.out.info('Restarting container')
    if call.running():
        do_stop(call, fast=bool(call.opt('fast')))
    return cmd_start(call)


def cmd_status(call):
    host, ctid = call.host, call.ctid
    exist = host.exists(ctid)
    running = call.running()
    suspended = (exist and not running and
                 os.path.exists(host.dump_file(ctid)))
    sys.stdout.write('CTID %d %s %s %s%s\n' % (
        ctid, 'exist' if exist else 'deleted',
        'mounted' if call.mounted() else 'unmounted',
        'running' if running else 'down',
        ' suspended' if suspended else ''))
    return 0


def cmd_mount(call):
    call.require_private()
    if call.mounted():
        call.out.error('Container is already mounted')
        return 0
    call.mount()
    return 0


def cmd_umount(call):
    if call.running():
        raise Failure(E_RUNNING, 'Container is running -- stop it first')
    if not call.mounted():
        raise Failure(E_NOT_MOUNTED, 'CT is not mounted')
    call.umount()
    return 0


def _rename_destroyed(path):
    if os.path.lexists(path):
        os.replace(path, path + '.destroyed')


def cmd_destroy(call):
    host, ctid, out = call.host, call.ctid, call.out
    if call.running():
        out.info('Container is currently running. Stop it first.')
        return E_RUNNING
    if call.mounted():
        raise Failure(E_MOUNTED, 'Container is currently mounted '
                                 '(umount first)')
    private = call.private
    if private and os.path.lexists(private):
        out.info('Destroying container private area: %s' % private)
        if os.path.islink(private) or not os.path.isdir(private):
            os.unlink(private)
        else:
            shutil.rmtree(private)
    _rename_destroyed(host.conf_path(ctid))
    for script in hostfs.ACTION_SCRIPTS:
        _rename_destroyed(host.conf_path(ctid, script))
    for path in (host.dump_file(ctid),):
        if os.path.exists(path):
            os.unlink(path)
    root = call.root
    if root:
        try:
            os.rmdir(root)
        except OSError:
            pass
    host.remove_name_links(ctid)
    call.kernel.forget(ctid)
    out.info('Container private area was destroyed')
    return 0


# -- create -----------------------------------------------------------------

CREATE_SPEC = dict.fromkeys(
    ('ostemplate', 'config', 'private', 'root', 'ipadd', 'hostname', 'name',
     'description', 'layout', 've_layout', 'velayout', 'diskspace',
     'diskinodes', 'local_uid', 'local_gid'), True)


def _safe_members(tar, destination):
    """Members of ``tar`` that stay inside ``destination`` when unpacked.

    Absolute names, ``..`` escapes and links pointing outside are refused;
    device nodes are skipped when we cannot create them (not root).
    """
    import tarfile
    base = os.path.realpath(destination)
    for member in tar.getmembers():
        target = os.path.realpath(os.path.join(base, member.name))
        if member.name.startswith('/') or (
                target != base and not target.startswith(base + os.sep)):
            raise tarfile.TarError('refusing to unpack %s outside the '
                                   'container' % member.name)
        if member.islnk() or (member.issym() and
                              not member.linkname.startswith('/')):
            link_base = base if member.islnk() else os.path.dirname(target)
            linked = os.path.realpath(os.path.join(link_base,
                                                   member.linkname))
            if linked != base and not linked.startswith(base + os.sep):
                raise tarfile.TarError('refusing link %s -> %s outside the '
                                       'container' % (member.name,
                                                      member.linkname))
        if (member.ischr() or member.isblk()) and os.geteuid() != 0:
            continue
        yield member


def unpack_template(tarball, destination):
    """Unpack an OS template tarball safely; errors raise Failure(48)."""
    import tarfile
    try:
        with tarfile.open(tarball, 'r:*') as tar:
            members = list(_safe_members(tar, destination))
            kwargs = {}
            if hasattr(tarfile, 'fully_trusted_filter'):
                # our own checks above replace the extraction filters, which
                # would reject the device nodes a real template carries
                kwargs['filter'] = 'fully_trusted'
            tar.extractall(destination, members=members, numeric_owner=True,
                           **kwargs)
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise Failure(E_NEW_PRVT, 'tar: %s' % exc)


def _find_template(template_dir, ostemplate):
    for ext in common.TEMPLATE_EXTENSIONS:
        path = os.path.join(template_dir, 'cache', ostemplate + '.tar' + ext)
        if os.path.isfile(path):
            return path
    raise Failure(E_OSTEMPLATE_NOT_FOUND,
                  'Cached OS template %s/cache/%s.tar[.gz|.bz2|.xz] not '
                  'found' % (template_dir, ostemplate))


def check_name(host, ctid, name):
    if not hostfs.NAME_RE.match(name):
        raise Failure(E_NAME, 'Error: invalid name %s' % name)
    owner = host.ctid_by_name(name)
    if owner is not None and owner != ctid and host.has_config(owner):
        raise Failure(E_NAME, 'Conflict: name %s already used by container '
                              '%d' % (name, owner))


def cmd_create(call):
    """vzctl create; every failure also prints the "failed" line."""
    copied = []
    try:
        return _create(call, copied)
    except hostfs.ToolError as exc:
        if exc.message:
            call.out.error(exc.message)
        call.out.error('Creation of container private area failed')
        for path in copied:
            os.unlink(path)
        raise Failure(exc.code)


def sample_path(host, name):
    return os.path.join(host.conf_dir, 've-%s.conf-sample' % name)


def _create(call, copied):
    host, ctid, out = call.host, call.ctid, call.out
    dst = call.conf_path
    cfg_exists = os.path.isfile(dst)
    sample = None
    if call.opt('config'):
        src = sample_path(host, call.opt('config'))
        if not os.path.isfile(src):
            raise Failure(E_CP_CONFIG, 'Sample config %s not found' % src)
        if cfg_exists:
            raise Failure(E_CP_CONFIG, 'Error: container config file %s '
                                       'already exists, can not use --config '
                                       'option' % dst)
        sample = call.opt('config')
    elif host.vz_conf.get('CONFIGFILE'):
        src = sample_path(host, host.vz_conf['CONFIGFILE'])
        if not os.path.isfile(src):
            raise Failure(E_CP_CONFIG, 'Sample config %s not found\nFix the '
                                       'value of CONFIGFILE in %s'
                          % (src, host.vz_conf_path))
        if cfg_exists:
            out.info('Warning: CT config file already exists, not applying '
                     'a default config sample.')
            out.info('It might lead to incomplete CT configuration, you can '
                     'use --applyconfig to fix.')
        else:
            sample = host.vz_conf['CONFIGFILE']
    if sample is not None:
        shutil.copyfile(src, dst)
        copied.append(dst)
    config = dict(host.vz_conf)
    config.update(host.read_config(ctid))
    values = _create_values(call)
    config.update(values)

    if not config.get('TEMPLATE'):
        raise Failure(E_TMPL_NOTSET, 'TEMPLATE is not set')
    if not config.get('VE_PRIVATE'):
        raise Failure(E_PRIVATE_NOTSET, 'VE_PRIVATE is not set')
    if not config.get('VE_ROOT'):
        raise Failure(E_ROOT_NOTSET, 'VE_ROOT is not set')
    private = conffile.expand_veid(config['VE_PRIVATE'], ctid)
    root = conffile.expand_veid(config['VE_ROOT'], ctid)
    if os.path.exists(private) and (not os.path.isdir(private) or
                                    os.listdir(private)):
        raise Failure(E_PRVT_EXISTS, 'Private area already exists in %s'
                      % private)
    layout = (config.get('VE_LAYOUT') or 'ploop').partition(':')[0]
    if values.get('NAME'):
        check_name(host, ctid, values['NAME'])
    # --ostemplate '' is kept, as vzctl 4.11 does: only an absent option
    # falls back to DEF_OSTEMPLATE (an empty name then finds no template).
    if 'OSTEMPLATE' in values:
        ostemplate = values['OSTEMPLATE']
    else:
        ostemplate = (config.get('OSTEMPLATE') or
                      config.get('DEF_OSTEMPLATE'))
        if not ostemplate:
            raise Failure(E_OSTEMPLATE_NOTSET,
                          'OS template is not specified')

    diskspace = None
    if config.get('DISKSPACE'):
        diskspace = conffile.parse_diskspace(config['DISKSPACE'])
    if layout == 'ploop' and (not diskspace or diskspace[1] <= 0):
        raise Failure(E_DISKSPACE_NOTSET, 'Error: diskspace not set '
                                          '(required for ploop)')
    tarball = _find_template(config['TEMPLATE'], ostemplate)
    _create_private(call, private, root, layout, tarball, ostemplate,
                    diskspace)

    if conffile.read(dists.dist_config(host, config)[0]).get('POST_CREATE'):
        out.info('Performing postcreate actions')
    changes = {'VE_ROOT': config['VE_ROOT'],
               'VE_PRIVATE': config['VE_PRIVATE'],
               'OSTEMPLATE': os.path.basename(ostemplate)}
    if sample is not None and not host.read_config(ctid).get(
            'ORIGIN_SAMPLE'):
        changes['ORIGIN_SAMPLE'] = sample
    changes.update((key, value) for key, value in values.items()
                   if key not in ('VE_ROOT', 'VE_PRIVATE', 'OSTEMPLATE',
                                  'VE_LAYOUT'))
    changes['VE_LAYOUT'] = layout
    host.save_config(ctid, changes)
    copied.clear()
    out.info('CT configuration saved to %s' % dst)
    if values.get('NAME'):
        host.set_name_link(values['NAME'], ctid)
    call.run_scripts(('vps.create',))
    out.info('Container private area was created')
    return 0


def _create_values(call):
    """Config values given on the create command line."""
    parsers = {'ostemplate': ('OSTEMPLATE', common.raw_text),
               'private': ('VE_PRIVATE', common.raw_text),
               'root': ('VE_ROOT', common.raw_text),
               'hostname': ('HOSTNAME', common.raw_text),
               'name': ('NAME', common.raw_text),
               'description': ('DESCRIPTION', common.raw_text),
               'layout': ('VE_LAYOUT', common.choice('simfs', 'ploop',
                                                     'ploop:expanded',
                                                     'ploop:plain',
                                                     'ploop:raw')),
               've_layout': None, 'velayout': None,
               'diskspace': ('DISKSPACE', common.diskspace_value),
               'diskinodes': ('DISKINODES', common.diskinodes_value),
               'local_uid': ('LOCAL_UID', common.uint),
               'local_gid': ('LOCAL_GID', common.uint)}
    values, ips = {}, []
    for name, value in call.options:
        if name == 'config':
            continue
        if name == 'ipadd':
            ip = parse_value(name, value, common.ip_value)
            if ip:
                ips.append(ip)
            continue
        key, parser = parsers[name] or parsers['layout']
        values[key] = parse_value(name, value, parser)
    if ips:
        values['IP_ADDRESS'] = ' '.join(ips)
    return values


def parse_value(option, value, parser):
    try:
        return parser(value)
    except conffile.FormatError:
        raise Failure(E_VALUE, 'Bad parameter for --%s: %s'
                      % (option, value))


def _create_private(call, private, root, layout, tarball, ostemplate,
                    diskspace):
    """Build ``<private>.tmp``, unpack the template, rename it in place."""
    out = call.out
    tmp = private + '.tmp'
    if os.path.lexists(tmp):
        out.error('Warning: Temp dir %s already exists, deleting' % tmp)
        shutil.rmtree(tmp)
    os.makedirs(private, exist_ok=True)   # claims the area, as vzctl does
    try:
        os.makedirs(tmp)
        unpack_to = tmp
        if layout == 'ploop':
            image_dir = os.path.join(tmp, 'root.hdd')
            os.mkdir(image_dir, 0o700)
            out.info('Creating image: %s size=%dK'
                     % (os.path.join(image_dir, 'root.hdd'), diskspace[1]))
            common.ploop_do(151, common.ploop_lib().create_image, image_dir,
                            diskspace[1], filesystem=call.kernel.real)
            os.makedirs(root, exist_ok=True)
            unpack_to = common.ploop_lib().mount_source(image_dir)
        out.info('Creating container private area (%s)' % ostemplate)
        if os.path.isfile(unpack_to):
            # A real image: fill it through a mount, as vzctl does.
            call.kernel.mount(call.ctid, unpack_to, root)
            try:
                unpack_template(tarball, root)
            finally:
                call.kernel.umount(call.ctid, root)
        else:
            os.makedirs(unpack_to, exist_ok=True)
            unpack_template(tarball, unpack_to)
        os.rmdir(private)
        os.rename(tmp, private)
    except BaseException:
        if os.path.isdir(private) and not os.listdir(private):
            os.rmdir(private)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
