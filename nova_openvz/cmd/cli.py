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

"""The ``nova-openvz`` command.

``nova-openvz simulate init DIR``  lay out a simulated OpenVZ host in DIR
``nova-openvz simulate info DIR``  which kernel backend it runs, and why
``nova-openvz sandbox``            all-in-one Nova tour on a simulated host
``nova-openvz check``              is this host ready for the driver?

Subcommands import what they need only when they run, so ``simulate``
stays quick and does not load Nova.
"""

import argparse
import sys


def _simulate_init(args):
    from vzsim import hostinit
    paths = hostinit.init_host(args.directory, kernel=args.kernel)
    print('Simulated OpenVZ host ready in %s' % args.directory)
    print('Driver options: %s' % paths['nova_conf'])
    return 0


def _simulate_info(args):
    from vzsim import hostfs
    from vzsim.kernel import backends
    host = hostfs.Host(args.directory)
    print('Simulated OpenVZ host %s' % host.root)
    for label, text in backends.describe(host):
        print('%s: %s' % (label, text))
    return 0


def _sandbox(args):
    from nova_openvz import sandbox
    return sandbox.main()


def _check(args):
    from nova_openvz import check
    return check.main(args.config_file, args.config_dir)


def build_parser():
    parser = argparse.ArgumentParser(
        prog='nova-openvz',
        description='Tools of the OpenStack Nova driver for OpenVZ.')
    commands = parser.add_subparsers(dest='command', required=True)

    simulate = commands.add_parser(
        'simulate', help='manage a simulated OpenVZ host')
    actions = simulate.add_subparsers(dest='action', required=True)
    init = actions.add_parser(
        'init', help='lay out a host tree with vzctl, vzlist, ploop and '
                     'vzmigrate in DIR/usr/sbin')
    init.add_argument('directory', metavar='DIR')
    init.add_argument('--kernel', choices=('modelled', 'real', 'auto'),
                      help='kernel backend written to DIR/sim/kernel: '
                           'modelled (state on disk), real (namespaces and '
                           'cgroups; needs root) or auto (real where '
                           'possible); default: keep what DIR/sim/kernel '
                           'says, else auto')
    init.set_defaults(func=_simulate_init)
    info = actions.add_parser(
        'info', help='say which kernel backend the host in DIR runs and why')
    info.add_argument('directory', metavar='DIR')
    info.set_defaults(func=_simulate_info)

    sandbox = commands.add_parser(
        'sandbox', help='boot, reboot, stop and start a server, read its '
                        'console log and delete it, through an all-in-one '
                        'Nova on a simulated host')
    sandbox.set_defaults(func=_sandbox)

    check = commands.add_parser(
        'check', help='check that this host is ready for the driver: one '
                      'line per check; exit 0 all passed, 1 warnings, '
                      '2 failures')
    check.add_argument('--config-file', action='append', default=[],
                       metavar='PATH',
                       help='a configuration file nova-compute reads '
                            '(repeatable; default: Nova\'s usual search, '
                            'e.g. /etc/nova/nova.conf)')
    check.add_argument('--config-dir', metavar='DIR',
                       help='a directory of *.conf files nova-compute reads')
    check.set_defaults(func=_check)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == '__main__':
    sys.exit(main())
