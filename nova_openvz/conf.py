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

"""Configuration options of the OpenVZ driver (the ``[openvz]`` group)."""

from oslo_config import cfg

openvz_group = cfg.OptGroup(
    'openvz',
    title='OpenVZ driver options',
    help='Where the OpenVZ host tools and configuration live, and how Nova '
         'flavors map onto container limits.')

host_opts = [
    cfg.StrOpt('tools_dir',
               default='/usr/sbin',
               help='Directory holding vzctl, vzlist, ploop and vzmigrate. '
                    'A simulated host created with "nova-openvz simulate '
                    'init DIR" keeps them in DIR/usr/sbin.'),
    cfg.StrOpt('vz_conf',
               default='/etc/vz/vz.conf',
               help='Global vzctl configuration file. The driver reads '
                    'TEMPLATE, VE_PRIVATE, VE_ROOT, LOCKDIR and DUMPDIR from '
                    'it; container configs are read from the "conf" '
                    'directory next to it.'),
    cfg.StrOpt('host_root',
               default='/',
               help='Root of the host filesystem the tools work on. "/" on a '
                    'real OpenVZ host; the host tree on a simulated one. '
                    'Used to find kernel interfaces such as /proc/vz.'),
    cfg.StrOpt('libvirt_uri',
               default='openvz:///system',
               help='libvirt URI used only to read host facts (CPU model, '
                    'topology, memory) through an in-process connection. '
                    'A simulated host uses libvirt\'s test driver fed with '
                    'DIR/libvirt-host.xml ("simulate init" writes it).'),
    cfg.StrOpt('image_staging_dir',
               default='$state_path/openvz-staging',
               help='Directory, writable by nova-compute, where Glance '
                    'images are downloaded before the privileged helper '
                    'moves them into the OS template cache, and snapshots '
                    'are packed before their upload. One nova-compute\'s '
                    'own: it empties it when it starts, of what a killed '
                    'process left.'),
]

container_opts = [
    cfg.StrOpt('layout',
               default='ploop',
               choices=[('ploop', 'Container disk is a ploop image.'),
                        ('simfs', 'Container disk is a directory tree.')],
               help='Disk layout of new containers.'),
    cfg.IntOpt('min_ctid',
               default=101,
               min=101,
               max=2147483644,
               help='Lowest container ID the driver allocates or acts on. '
                    'IDs up to 100 are reserved by OpenVZ.'),
    cfg.IntOpt('first_ctid',
               min=101,
               max=2147483644,
               help='For hosts servers move between. vzmigrate keeps a '
                    'container\'s ID and a host that has that ID refuses the '
                    'move, so give each such host a first_ctid far from the '
                    'others\' (101, 100101, ...) and one min_ctid. The host '
                    'then hands out IDs in turn from first_ctid, each after '
                    'the last one (not the lowest free one, which a '
                    'container that moved away may still hold elsewhere), '
                    'and after the highest from min_ctid. Containers '
                    'arriving from other hosts are acted on from min_ctid '
                    'up. Unset: the lowest free ID from min_ctid.'),
    cfg.IntOpt('default_root_gb',
               default=10,
               min=1,
               help='Disk size in GB for flavors whose root_gb is 0.'),
    cfg.IntOpt('cpuunits_per_vcpu',
               default=1000,
               min=8,
               max=500000,
               help='CPU weight (CPUUNITS) given per flavor vCPU unless the '
                    'flavor sets quota:cpu_shares or openvz:cpuunits.'),
    cfg.FloatOpt('state_cache_seconds',
                 default=5.0,
                 min=0,
                 help='How long one vzlist listing of all containers may '
                      'answer power-state queries. One listing then serves a '
                      'whole periodic task cycle; every change the driver '
                      'makes discards it.'),
    cfg.FloatOpt('lifecycle_event_interval',
                 default=2.0,
                 min=0,
                 help='Seconds between two looks (one vzlist call for the '
                      'whole host) for containers whose state changed '
                      'outside Nova: a guest that halted itself, a container '
                      'killed, or stopped or started by an operator with '
                      'vzctl. Nova hears of each through a lifecycle event '
                      'instead of at its next power-state sync. 0 turns the '
                      'events off (the sync alone then notices).'),
]

tool_opts = [
    cfg.IntOpt('lock_retries',
               default=5,
               min=0,
               help='How many times a tool call that found the container '
                    'locked by another vzctl (exit code 9) is retried.'),
    cfg.FloatOpt('lock_retry_interval',
                 default=0.5,
                 min=0,
                 help='First wait in seconds before retrying a locked '
                      'container; doubled at each retry.'),
    cfg.ListOpt('migration_peers',
                default=[],
                help='Host names or addresses of the other OpenVZ compute '
                     'hosts servers may move to (cold and live migration '
                     'with vzmigrate). Only read by "nova-openvz check", '
                     'which checks that root reaches each one with ssh '
                     'keys, as vzmigrate needs; Nova chooses the '
                     'destinations.'),
    cfg.IntOpt('tool_timeout',
               default=900,
               min=1,
               help='Seconds any single host tool call may run before it is '
                    'killed and reported as failed.'),
    cfg.IntOpt('query_timeout',
               default=60,
               min=1,
               help='Seconds a vzlist call may run before it is killed and '
                    'reported as failed. Every query of container state '
                    'waits for the listing in progress, so this is kept far '
                    'shorter than tool_timeout.'),
    cfg.IntOpt('console_log_max_bytes',
               default=1024 * 1024,
               min=64 * 1024,
               help='Size at which a container\'s console log, '
                    '<instances_path>/<uuid>/console.log, is renamed to '
                    'console.log.0 (replacing the older one) and started '
                    'anew: the console takes at most twice this much disk '
                    'per server. The API returns the last 100 KiB.'),
]

network_opts = [
    cfg.StrOpt('network_mode',
               default='bridged',
               choices=[('bridged', 'Each Neutron port is a veth pair: the '
                         'host end is plugged by os-vif (Open vSwitch, '
                         'native or hybrid), the container end has the '
                         "port's MAC and addresses."),
                        ('routed', "The ports' fixed IPs go on the "
                         "container's venet device and the host routes "
                         'them (vzctl --ipadd); nothing is plugged into a '
                         'switch, so Neutron security groups and '
                         'network-vif-plugged events do not apply.')],
               help='How containers are connected to Neutron networks.'),
]

ALL_OPTS = host_opts + container_opts + network_opts + tool_opts


def register_opts(conf):
    conf.register_group(openvz_group)
    conf.register_opts(ALL_OPTS, group=openvz_group)


def list_opts():
    """Entry point for oslo-config-generator."""
    return [(openvz_group, ALL_OPTS)]


CONF = cfg.CONF
register_opts(CONF)
