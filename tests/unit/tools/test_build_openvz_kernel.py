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

"""tools/build-openvz-kernel.sh, run for real on a stand-in kernel tree.

The stand-in is a small tree in a tarball, like linux-2.6.32.tar.xz: a
Makefile with the targets the script uses (oldconfig or olddefconfig,
bindeb-pkg and/or deb-pkg, or neither), C files it compiles with the
compiler given to the script, a scripts/config, and a builddeb that makes
real .deb files with dpkg-deb. The sources are signed with a throwaway gpg
key made for the test run, the way kernel.org (a .tar.sign over the
uncompressed tar) and OpenVZ (a .gz.asc) sign theirs. Nothing touches the
network: downloads come from file:// mirrors.

The opt-in slow test (NOVA_OPENVZ_SLOW_TESTS=1) builds a real kernel,
Debian's linux-source with a tiny config, through the script.
"""

import atexit
import glob
import gzip
import hashlib
import lzma
import os
import shutil
import subprocess
import tarfile
import tempfile

import testtools
from testtools import content

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
SCRIPT = os.path.join(ROOT, 'tools', 'build-openvz-kernel.sh')

VERSION = '042stab999.1'
RELEASE = '2.6.32-' + VERSION
VZ7_VERSION = '3.10.0-999.1.1.vz7.99.1'
STEPS = ('fetch', 'verify', 'unpack', 'patch', 'configure', 'build',
         'collect')

# Exit codes of the script (its --help lists them).
E_USAGE, E_TOOL, E_DISK, E_VERIFY, E_PATCH, E_BUILD = 2, 3, 4, 6, 8, 10

# The tests also need make, patch, xz and gcc (bindep's test profile); only
# these two are worth a skip.
MISSING = [tool for tool in ('gpg', 'dpkg-deb') if shutil.which(tool) is None]


def _deb_arch():
    return subprocess.run(['dpkg', '--print-architecture'], check=True,
                          capture_output=True, text=True).stdout.strip()


def _write(path, text, mode=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)
    if mode is not None:
        os.chmod(path, mode)


def _sha256(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def _tree_digest(top):
    """One digest over every file's path and content under top."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(top)):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            digest.update(os.path.relpath(path, top).encode())
            with open(path, 'rb') as f:
                digest.update(f.read())
    return digest.hexdigest()


# --- the stand-in kernel tree ------------------------------------------------

MAKEFILE_HEAD = """\
# Stand-in kernel Makefile for the tests of tools/build-openvz-kernel.sh.
VERSION = {version}
PATCHLEVEL = {patchlevel}
SUBLEVEL = {sublevel}
EXTRAVERSION ={extraversion}
KERNELRELEASE = $(VERSION).$(PATCHLEVEL).$(SUBLEVEL)$(EXTRAVERSION)

all: arch/x86/boot/bzImage System.map

init/version.o: init/version.c .config
\t$(CC) $(KCFLAGS) -c -o $@ init/version.c

vmlinux: init/version.o init/main.c
\t@if [ -n "$(STANDIN_FAIL_BUILD)" ]; then \\
\t\techo "init/main.c:3: error: stand-in build failure" >&2; exit 1; fi
\t$(CC) $(KCFLAGS) -c -o init/main.o init/main.c
\t$(CC) -no-pie -o $@ init/main.o init/version.o

arch/x86/boot/bzImage: vmlinux
\tmkdir -p arch/x86/boot
\tcp vmlinux $@

System.map: vmlinux
\techo '0000000000000000 T _stext' > $@

kernelrelease:
\t@echo $(KERNELRELEASE)

image_name:
\t@echo arch/x86/boot/bzImage

modules_install:
\tmkdir -p $(INSTALL_MOD_PATH)/lib/modules/$(KERNELRELEASE)/kernel
\tcp init/version.o \\
\t\t$(INSTALL_MOD_PATH)/lib/modules/$(KERNELRELEASE)/kernel/standin.ko
"""

OLDCONFIG = """
# Like kconfig's oldconfig: asks, so it needs answers on stdin.
oldconfig:
\t@read answer
\techo 'CONFIG_STANDIN_OLDCONFIG=y' >> .config
"""

OLDDEFCONFIG = """
olddefconfig:
\techo 'CONFIG_STANDIN_OLDDEFCONFIG=y' >> .config
"""

PKG_TARGET = """
{target}: all
\tCC='$(CC)' KCFLAGS='$(KCFLAGS)' HOSTCC='$(HOSTCC)' \\
\t\tsh scripts/package/builddeb {target} $(KERNELRELEASE)
"""

BUILDDEB = """\
#!/bin/sh
# Stand-in for scripts/package/builddeb: real packages, made with dpkg-deb.
set -e
target=$1
release=$2
arch=$(dpkg --print-architecture)
for pkg in linux-image-$release linux-headers-$release; do
    root=debian/$pkg
    rm -rf "$root"
    mkdir -p "$root/DEBIAN" "$root/usr/share/doc/$pkg"
    cat > "$root/DEBIAN/control" <<EOF
Package: $pkg
Version: $release-1
Architecture: $arch
Maintainer: Stand-in <standin@example.invalid>
Description: stand-in kernel package for the tests
EOF
    printf 'target=%s\\nCC=%s\\nKCFLAGS=%s\\nHOSTCC=%s\\n' \\
        "$target" "$CC" "$KCFLAGS" "$HOSTCC" \\
        > "$root/usr/share/doc/$pkg/build-info"
    case $pkg in
        linux-image-*)
            mkdir -p "$root/boot"
            cp arch/x86/boot/bzImage "$root/boot/vmlinuz-$release"
            cp .config "$root/boot/config-$release"
            ;;
        *)
            mkdir -p "$root/usr/src/$pkg"
            cp Makefile "$root/usr/src/$pkg/"
            ;;
    esac
    dpkg-deb --root-owner-group --build "$root" \\
        "../${pkg}_$release-1_$arch.deb"
done
"""

SCRIPTS_CONFIG = """\
#!/bin/sh
# Stand-in for the kernel's scripts/config (works on ./.config).
file=.config
set_line() {
    sed -i -e "/^CONFIG_$1=/d" -e "/^# CONFIG_$1 is not set/d" "$file"
    echo "$2" >> "$file"
}
while [ $# -gt 0 ]; do
    case $1 in
        --file) file=$2; shift 2 ;;
        -d|--disable) set_line "$2" "# CONFIG_$2 is not set"; shift 2 ;;
        -e|--enable) set_line "$2" "CONFIG_$2=y"; shift 2 ;;
        --set-str) set_line "$2" "CONFIG_$2=\\"$3\\""; shift 3 ;;
        *) echo "scripts/config: unknown option $1" >&2; exit 1 ;;
    esac
done
echo "# edited by scripts/config" >> "$file"
"""

MAIN_C = """\
#include <stdio.h>
extern const char *standin_flavour(void);
int main(void) { printf("stand-in kernel: %s\\n", standin_flavour()); \
return 0; }
"""

VERSION_C = 'const char *standin_flavour(void) { return "%s"; }\n'

CONFIG = """\
CONFIG_X86_64=y
CONFIG_MODULES=y
CONFIG_FTRACE=y
CONFIG_KMEMCHECK=y
CONFIG_DEBUG_INFO=y
CONFIG_SYSTEM_TRUSTED_KEYS="debian/certs/debian-uefi-certs.pem"
CONFIG_VE=y
"""


def make_tree(top, version=(2, 6, 32), extraversion='', targets=(
        'bindeb-pkg', 'deb-pkg'), config_target='oldconfig',
        scripts_config=True, flavour='vanilla', gcc_headers=None,
        makefile_extra=''):
    """Lay out a stand-in kernel tree in top."""
    makefile = MAKEFILE_HEAD.format(
        version=version[0], patchlevel=version[1], sublevel=version[2],
        extraversion=' ' + extraversion if extraversion else '')
    if config_target == 'oldconfig':
        makefile += OLDCONFIG
    else:
        makefile += OLDDEFCONFIG
    for target in targets:
        makefile += PKG_TARGET.format(target=target)
    makefile += makefile_extra
    _write(os.path.join(top, 'Makefile'), makefile)
    _write(os.path.join(top, 'init', 'main.c'), MAIN_C)
    _write(os.path.join(top, 'init', 'version.c'), VERSION_C % flavour)
    if targets:
        _write(os.path.join(top, 'scripts', 'package', 'builddeb'),
               BUILDDEB, 0o755)
    if scripts_config:
        _write(os.path.join(top, 'scripts', 'config'), SCRIPTS_CONFIG, 0o755)
    if gcc_headers is not None:
        _write(os.path.join(top, 'include', 'linux', 'compiler-gcc.h'),
               '#define __gcc_header(x) #x\n'
               '#define _gcc_header(x) __gcc_header(linux/compiler-gcc##x.h)\n'
               '#define gcc_header(x) _gcc_header(x)\n'
               '#include gcc_header(__GNUC__)\n')
        for major in gcc_headers:
            _write(os.path.join(top, 'include', 'linux',
                                'compiler-gcc%d.h' % major), '\n')


def make_tar(src_parent, top_name, dest, arcname=None):
    """Tar src_parent/top_name into dest (.tar, .tar.xz or .tar.gz)."""
    mode = {'.xz': 'w:xz', '.gz': 'w:gz'}.get(os.path.splitext(dest)[1], 'w')
    with tarfile.open(dest, mode) as tar:
        tar.add(os.path.join(src_parent, top_name),
                arcname=arcname or top_name)


class Artifacts(object):
    """The stand-in sources and a throwaway signing key, made once."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix='bok-')
        atexit.register(self.cleanup)
        self.gnupghome = os.path.join(self.dir, 'gnupg')
        os.mkdir(self.gnupghome, 0o700)
        self.key = self._make_key('Stand-in Kernel Signer')
        self.keyring = os.path.join(self.dir, 'keyring.gpg')
        self._gpg('--export', '--output', self.keyring, self.key)
        self.other_key = self._make_key('Someone Else')
        self._make_rhel6()
        self._make_vz7()

    def cleanup(self):
        subprocess.run(['gpgconf', '--kill', 'gpg-agent'],
                       env=dict(os.environ, GNUPGHOME=self.gnupghome),
                       capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def _gpg(self, *args):
        return subprocess.run(
            ['gpg', '--batch', '--no-tty', '--pinentry-mode', 'loopback',
             '--passphrase', ''] + list(args),
            env=dict(os.environ, GNUPGHOME=self.gnupghome),
            check=True, capture_output=True, text=True).stdout

    def _make_key(self, name):
        uid = '%s <%s@example.invalid>' % (name, name.split()[0].lower())
        self._gpg('--quick-gen-key', uid, 'ed25519', 'sign', 'never')
        listing = self._gpg('--with-colons', '--list-keys', uid)
        return [line.split(':')[9] for line in listing.splitlines()
                if line.startswith('fpr:')][0]

    def sign(self, path, out=None, key=None):
        out = out or path + '.asc'
        self._gpg('--yes', '--armor', '--local-user', key or self.key,
                  '--output', out, '--detach-sign', path)
        return out

    def _make_rhel6(self):
        """linux-2.6.32.tar.xz (+ .tar.sign), the patch (+ .gz.asc)."""
        # a: vanilla, b: patched; the patch is a diff of the two, -p1.
        work = os.path.join(self.dir, 'rhel6-work')
        make_tree(os.path.join(work, 'a'))
        make_tree(os.path.join(work, 'b'), extraversion='-' + VERSION,
                  flavour='openvz')
        _write(os.path.join(work, 'b', 'kernel', 've', 've.c'),
               '/* containers */\n')
        self.rhel6 = os.path.join(self.dir, 'rhel6')
        os.mkdir(self.rhel6)
        tar = os.path.join(self.rhel6, 'linux-2.6.32.tar')
        make_tar(work, 'a', tar, arcname='linux-2.6.32')
        # kernel.org signs the uncompressed tar.
        self.sign(tar, out=tar[:-len('.tar')] + '.tar.sign')
        with open(tar, 'rb') as f, lzma.open(tar + '.xz', 'wb') as xz:
            shutil.copyfileobj(f, xz)
        os.unlink(tar)
        self.tarball = tar + '.xz'
        diff = subprocess.run(['diff', '-Nru', 'a', 'b'], cwd=work,
                              capture_output=True, text=True).stdout
        self.patch = os.path.join(self.rhel6,
                                  'patch-%s-combined.gz' % VERSION)
        with gzip.open(self.patch, 'wt') as f:
            f.write(diff)
        self.sign(self.patch)
        self.config = os.path.join(self.rhel6,
                                   'config-2.6.32-%s.x86_64' % VERSION)
        _write(self.config, CONFIG)

    def _make_vz7(self):
        """A full vzkernel tree with config.OpenVZ, only deb-pkg."""
        top = 'vzkernel-rh7-' + VZ7_VERSION
        work = os.path.join(self.dir, 'vz7-work')
        make_tree(os.path.join(work, top), version=(3, 10, 0),
                  extraversion='-999.1.1.vz7.99.1', targets=('deb-pkg',),
                  config_target='olddefconfig', scripts_config=False,
                  flavour='vz7')
        _write(os.path.join(work, top, 'config.OpenVZ'), CONFIG)
        self.vz7 = os.path.join(self.dir, 'vz7')
        os.mkdir(self.vz7)
        self.vz7_tarball = os.path.join(self.vz7,
                                        'vzkernel-%s.tar.gz' % VZ7_VERSION)
        make_tar(work, top, self.vz7_tarball)
        self.sign(self.vz7_tarball)

    def variant_tarball(self, name, **tree_args):
        """An unsigned linux-2.6.32 tarball of another stand-in tree."""
        work = os.path.join(self.dir, name + '-work')
        make_tree(os.path.join(work, 'linux-2.6.32'), **tree_args)
        dest = os.path.join(self.dir, name)
        os.mkdir(dest)
        tarball = os.path.join(dest, 'linux-2.6.32.tar.xz')
        make_tar(work, 'linux-2.6.32', tarball)
        with open(os.path.join(dest, 'SHA256SUMS'), 'w') as f:
            f.write('%s  linux-2.6.32.tar.xz\n' % _sha256(tarball))
        return tarball


_ARTIFACTS = []


def artifacts():
    if not _ARTIFACTS:
        _ARTIFACTS.append(Artifacts())
    return _ARTIFACTS[0]


@testtools.skipIf(MISSING, 'needs %s (Debian packages gnupg and dpkg)'
                  % ' and '.join(MISSING))
class _ScriptTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.art = artifacts()
        self.tmp = tempfile.mkdtemp(prefix='bok-test-')
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.workdir = os.path.join(self.tmp, 'work')
        self.output = os.path.join(self.tmp, 'debs')
        self.tree = os.path.join(self.workdir, 'src', 'linux')
        # A compiler wrapper: proves the script builds with --cc.
        self.bin = os.path.join(self.tmp, 'bin')
        self.cc_log = os.path.join(self.tmp, 'cc.log')
        _write(os.path.join(self.bin, 'standin-cc'),
               '#!/bin/sh\necho "$*" >> "%s"\nexec gcc "$@"\n' % self.cc_log,
               0o755)
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ('OPENVZ_MIRROR', 'KERNEL_ORG_MIRROR',
                                 'VZ7_ARCHIVE_URL', 'STANDIN_FAIL_BUILD')}
        self.env['PATH'] = self.bin + os.pathsep + os.environ['PATH']
        self.env['GNUPGHOME'] = os.path.join(self.tmp, 'empty-gnupg')
        os.mkdir(self.env['GNUPGHOME'], 0o700)
        self.runs = 0

    def run_script(self, *args, env=None):
        self.runs += 1
        proc = subprocess.run(['bash', SCRIPT] + list(args), cwd=self.tmp,
                              env=env or self.env, capture_output=True,
                              text=True, timeout=300)
        self.addDetail('run-%d' % self.runs, content.text_content(
            '$ %s\nexit %d\n--- stdout\n%s--- stderr\n%s' % (
                ' '.join(args), proc.returncode, proc.stdout, proc.stderr)))
        return proc

    def rhel6_args(self, *extra, tarball=None, patch=None, config=None):
        return ['--branch', 'rhel6', '--version', VERSION,
                '--arch', 'x86_64',
                '--source-tarball', tarball or self.art.tarball,
                '--patch', patch or self.art.patch,
                '--config', config or self.art.config,
                '--keyring', self.art.keyring,
                '--workdir', self.workdir, '--output', self.output,
                '--cc', 'standin-cc', '--jobs', '2',
                '--min-disk-gb', '0'] + list(extra)

    def assertExit(self, code, proc):
        self.assertEqual(code, proc.returncode, proc.stderr)

    def stamps(self):
        try:
            return set(os.listdir(os.path.join(self.workdir, 'stamps')))
        except FileNotFoundError:
            return set()

    def debs(self):
        if not os.path.isdir(self.output):
            return []
        return sorted(f for f in os.listdir(self.output)
                      if f.endswith('.deb'))

    def deb_field(self, deb, field):
        return subprocess.run(
            ['dpkg-deb', '--field', os.path.join(self.output, deb), field],
            check=True, capture_output=True, text=True).stdout.strip()

    def unpack_deb(self, deb):
        dest = os.path.join(self.tmp, 'x-' + deb)
        subprocess.run(['dpkg-deb', '-x', os.path.join(self.output, deb),
                        dest], check=True)
        return dest

    def assertChecksumsVerify(self):
        check = subprocess.run(['sha256sum', '-c', 'SHA256SUMS'],
                               cwd=self.output, capture_output=True,
                               text=True)
        self.assertEqual(0, check.returncode, check.stdout + check.stderr)
        listed = sorted(line.rsplit(': ', 1)[0] for line in
                        check.stdout.splitlines() if line.endswith(': OK'))
        self.assertEqual(self.debs(), listed)


class TestSuccess(_ScriptTest):

    def test_builds_signed_sources_into_debs_with_checksums(self):
        proc = self.run_script(*self.rhel6_args())
        self.assertExit(0, proc)
        arch = _deb_arch()
        self.assertEqual(
            ['linux-headers-%s_%s-1_%s.deb' % (RELEASE, RELEASE, arch),
             'linux-image-%s_%s-1_%s.deb' % (RELEASE, RELEASE, arch)],
            self.debs())
        self.assertChecksumsVerify()
        # Both signatures were checked, the kernel.org one over the
        # uncompressed tar.
        self.assertIn('signature OK: linux-2.6.32.tar.sign', proc.stdout)
        self.assertIn('signature OK: patch-%s-combined.gz.asc' % VERSION,
                      proc.stdout)
        self.assertIn('--dry-run', proc.stdout)
        self.assertIn('packaging target: bindeb-pkg', proc.stdout)
        for step in STEPS:
            self.assertIn('[%s] done' % step, proc.stdout)
        self.assertEqual(set(STEPS), self.stamps())

        image = self.unpack_deb(self.debs()[1])
        # The patched tree was compiled with the chosen compiler, with the
        # old-tree workarounds for a modern gcc.
        kernel = os.path.join(image, 'boot', 'vmlinuz-' + RELEASE)
        ran = subprocess.run([kernel], capture_output=True, text=True)
        self.assertEqual('stand-in kernel: openvz\n', ran.stdout)
        with open(self.cc_log) as f:
            self.assertIn('-fno-pie -c -o init/version.o init/version.c',
                          f.read())
        info_path = os.path.join(image, 'usr', 'share', 'doc',
                                 'linux-image-' + RELEASE, 'build-info')
        with open(info_path) as f:
            info = f.read()
        self.assertIn('target=bindeb-pkg\nCC=standin-cc\n', info)
        self.assertIn('HOSTCC=standin-cc -fcommon', info)
        # The config: the overrides (through scripts/config), then oldconfig
        # (the tree has no olddefconfig), fed answers.
        with open(os.path.join(image, 'boot', 'config-' + RELEASE)) as f:
            config = f.read().splitlines()
        for sym in ('FTRACE', 'KMEMCHECK', 'DEBUG_INFO'):
            self.assertIn('# CONFIG_%s is not set' % sym, config)
            self.assertNotIn('CONFIG_%s=y' % sym, config)
        self.assertIn('CONFIG_SYSTEM_TRUSTED_KEYS=""', config)
        self.assertIn('CONFIG_VE=y', config)
        self.assertIn('# edited by scripts/config', config)
        self.assertEqual('CONFIG_STANDIN_OLDCONFIG=y', config[-1])

        # The same command again: every step is stamped, nothing runs.
        again = self.run_script(*self.rhel6_args())
        self.assertExit(0, again)
        for step in STEPS:
            self.assertIn('[%s] skipped: finished in an earlier run' % step,
                          again.stdout)
        self.assertNotIn('+ make', again.stdout)

    def test_downloads_and_verifies_from_mirrors(self):
        if shutil.which('curl') is None:
            self.skipTest('downloads need curl (bindep: curl)')
        mirror = os.path.join(self.tmp, 'mirror')
        kernel = os.path.join(mirror, 'kernel', 'v2.6')
        branch = os.path.join(mirror, 'openvz', 'kernel', 'branches',
                              'rhel6-2.6.32', VERSION)
        os.makedirs(kernel)
        os.makedirs(os.path.join(branch, 'patches'))
        os.makedirs(os.path.join(branch, 'configs'))
        for name in ('linux-2.6.32.tar.xz', 'linux-2.6.32.tar.sign'):
            shutil.copy(os.path.join(self.art.rhel6, name), kernel)
        for name in (self.art.patch, self.art.patch + '.asc'):
            shutil.copy(name, os.path.join(branch, 'patches'))
        shutil.copy(self.art.config, os.path.join(branch, 'configs'))
        sums = os.path.join(self.tmp, 'SHA256SUMS')
        _write(sums, '%s  %s\n' % (_sha256(self.art.config),
                                   os.path.basename(self.art.config)))
        self.env['KERNEL_ORG_MIRROR'] = 'file://' + mirror + '/kernel'
        self.env['OPENVZ_MIRROR'] = 'file://' + mirror + '/openvz'

        proc = self.run_script(
            '--branch', 'rhel6', '--version', '2.6.32-' + VERSION,
            '--arch', 'x86_64', '--keyring', self.art.keyring,
            '--sha256', sums, '--workdir', self.workdir,
            '--output', self.output, '--cc', 'standin-cc',
            '--min-disk-gb', '0')
        self.assertExit(0, proc)
        self.assertIn('+ curl -fsSL --retry 3 -o %s/sources/'
                      'linux-2.6.32.tar.xz.part file://%s/kernel/v2.6/'
                      'linux-2.6.32.tar.xz' % (self.workdir, mirror),
                      proc.stdout)
        self.assertIn('signature OK: linux-2.6.32.tar.sign', proc.stdout)
        self.assertIn('signature OK: patch-%s-combined.gz.asc' % VERSION,
                      proc.stdout)
        self.assertIn('checksum OK: ' + os.path.basename(self.art.config),
                      proc.stdout)
        self.assertEqual(2, len(self.debs()))
        self.assertChecksumsVerify()

    def test_deb_pkg_when_the_tree_has_no_bindeb_pkg(self):
        # vz7: a full tree, its own config.OpenVZ, no scripts/config (the
        # overrides go through sed) and olddefconfig.
        proc = self.run_script(
            '--branch', 'vz7', '--version', VZ7_VERSION, '--arch', 'x86_64',
            '--source-tarball', self.art.vz7_tarball,
            '--keyring', self.art.keyring, '--workdir', self.workdir,
            '--output', self.output, '--cc', 'standin-cc',
            '--min-disk-gb', '0')
        self.assertExit(0, proc)
        self.assertIn('packaging target: deb-pkg', proc.stdout)
        self.assertIn('no patch to apply', proc.stdout)
        self.assertIn('config overrides via sed', proc.stdout)
        self.assertIn('+ make -C %s ARCH=x86_64 CC=standin-cc' % self.tree,
                      proc.stdout)
        release = '3.10.0-999.1.1.vz7.99.1'
        image = 'linux-image-%s_%s-1_%s.deb' % (
            release, release, _deb_arch())
        self.assertIn(image, self.debs())
        self.assertChecksumsVerify()
        root = self.unpack_deb(image)
        with open(os.path.join(root, 'boot', 'config-' + release)) as f:
            config = f.read().splitlines()
        self.assertIn('# CONFIG_FTRACE is not set', config)
        self.assertNotIn('CONFIG_FTRACE=y', config)
        self.assertIn('CONFIG_STANDIN_OLDDEFCONFIG=y', config)
        with open(os.path.join(root, 'usr', 'share', 'doc',
                               'linux-image-' + release, 'build-info')) as f:
            self.assertIn('target=deb-pkg\n', f.read())

    def test_packages_itself_when_the_tree_has_no_target(self):
        tarball = self.art.variant_tarball('notarget', targets=(),
                                           extraversion='-' + VERSION,
                                           flavour='openvz')
        proc = self.run_script(
            '--branch', 'vz7', '--version', 'standin-1',
            '--source-tarball', tarball, '--config', self.art.config,
            '--workdir', self.workdir, '--output', self.output,
            '--cc', 'standin-cc', '--arch', 'x86_64', '--min-disk-gb', '0')
        self.assertExit(0, proc)
        self.assertIn("does not look like a vz7 version", proc.stderr)
        self.assertIn('checksum OK: linux-2.6.32.tar.xz', proc.stdout)
        self.assertIn('no bindeb-pkg or deb-pkg target', proc.stdout)
        deb = 'linux-image-%s_%s-1_amd64.deb' % (RELEASE, RELEASE)
        self.assertEqual([deb], self.debs())
        self.assertChecksumsVerify()
        self.assertEqual('linux-image', self.deb_field(deb, 'Provides'))
        root = self.unpack_deb(deb)
        for path in ('boot/vmlinuz-' + RELEASE, 'boot/config-' + RELEASE,
                     'boot/System.map-' + RELEASE,
                     'lib/modules/%s/kernel/standin.ko' % RELEASE):
            self.assertTrue(os.path.isfile(os.path.join(root, path)), path)
        control = os.path.join(self.tmp, 'control')
        subprocess.run(['dpkg-deb', '-e', os.path.join(self.output, deb),
                        control], check=True)
        with open(os.path.join(control, 'postinst')) as f:
            self.assertIn('/etc/kernel/postinst.d', f.read())


class TestVerification(_ScriptTest):

    def assertNothingBuilt(self):
        self.assertFalse(os.path.exists(os.path.join(self.workdir, 'src')))
        self.assertEqual([], self.debs())
        self.assertEqual({'fetch'}, self.stamps())

    def copy_sources(self, *names):
        dest = os.path.join(self.tmp, 'sources')
        os.makedirs(dest, exist_ok=True)
        for name in names:
            shutil.copy(os.path.join(self.art.rhel6, name), dest)
        return dest

    def test_bad_signature_stops_before_unpacking(self):
        patch_name = os.path.basename(self.art.patch)
        dest = self.copy_sources(patch_name, patch_name + '.asc')
        patch = os.path.join(dest, patch_name)
        with gzip.open(patch, 'at') as f:
            f.write('diff -Nru a/evil b/evil\n')
        proc = self.run_script(*self.rhel6_args(patch=patch))
        self.assertExit(E_VERIFY, proc)
        self.assertIn('[verify] ERROR: bad or unverifiable signature %s.asc'
                      % patch_name, proc.stderr)
        self.assertIn('BAD signature', proc.stderr)
        self.assertNothingBuilt()

    def test_signature_by_a_key_not_in_the_keyring_fails(self):
        dest = self.copy_sources('linux-2.6.32.tar.xz')
        tarball = os.path.join(dest, 'linux-2.6.32.tar.xz')
        self.art.sign(tarball, key=self.art.other_key)
        proc = self.run_script(*self.rhel6_args(tarball=tarball))
        self.assertExit(E_VERIFY, proc)
        self.assertIn('bad or unverifiable signature linux-2.6.32.tar.xz.asc',
                      proc.stderr)
        self.assertIn('No public key', proc.stderr)
        self.assertNothingBuilt()

    def test_bad_checksum(self):
        sums = os.path.join(self.tmp, 'SHA256SUMS')
        _write(sums, '%s  linux-2.6.32.tar.xz\n' % ('0' * 64))
        proc = self.run_script(*self.rhel6_args('--sha256', sums))
        self.assertExit(E_VERIFY, proc)
        self.assertIn('[verify] ERROR: checksum mismatch for '
                      'linux-2.6.32.tar.xz', proc.stderr)
        self.assertIn('expected %s, got %s' % ('0' * 64,
                                               _sha256(self.art.tarball)),
                      proc.stderr)
        self.assertNothingBuilt()

    def test_unverifiable_sources_need_a_checksum_or_no_verify(self):
        dest = self.copy_sources('linux-2.6.32.tar.xz')
        tarball = os.path.join(dest, 'linux-2.6.32.tar.xz')
        proc = self.run_script(*self.rhel6_args(tarball=tarball))
        self.assertExit(E_VERIFY, proc)
        self.assertIn('[verify] ERROR: no signature and no checksum for the '
                      'tarball linux-2.6.32.tar.xz', proc.stderr)
        self.assertIn('--no-verify', proc.stderr)
        self.assertNothingBuilt()

        # A SHA256SUMS next to the tarball is enough.
        _write(os.path.join(dest, 'SHA256SUMS'),
               '%s  linux-2.6.32.tar.xz\n' % _sha256(tarball))
        proc = self.run_script(*self.rhel6_args(tarball=tarball))
        self.assertExit(0, proc)
        self.assertIn('[fetch] inputs changed since the earlier run',
                      proc.stdout)
        self.assertIn('checksum OK: linux-2.6.32.tar.xz', proc.stdout)

        # --no-verify skips it, loudly.
        args = self.rhel6_args('--no-verify', '--clean')
        args.remove('--keyring')
        args.remove(self.art.keyring)
        proc = self.run_script(*args)
        self.assertExit(0, proc)
        self.assertIn('NOT checked', proc.stderr)
        self.assertNotIn('signature OK', proc.stdout)
        self.assertEqual(2, len(self.debs()))


class TestFailures(_ScriptTest):

    def test_patch_that_does_not_apply_changes_nothing(self):
        other = os.path.join(self.tmp, 'other')
        _write(os.path.join(other, 'a', 'init', 'version.c'),
               'something else\n')
        _write(os.path.join(other, 'b', 'init', 'version.c'),
               'something changed\n')
        diff = subprocess.run(['diff', '-Nru', 'a', 'b'], cwd=other,
                              capture_output=True, text=True).stdout
        patch = os.path.join(self.tmp, 'patch-%s-combined.gz' % VERSION)
        with gzip.open(patch, 'wt') as f:
            f.write(diff)
        self.art.sign(patch)
        proc = self.run_script(*self.rhel6_args(patch=patch))
        self.assertExit(E_PATCH, proc)
        self.assertIn('[patch] ERROR: the patch patch-%s-combined.gz does '
                      'not apply to the tree (nothing was changed)\n'
                      '[patch]   what to do: check that the patch is for '
                      'this version' % VERSION, proc.stderr)
        self.assertIn('Hunk #1 FAILED', proc.stderr)
        self.assertEqual({'fetch', 'verify', 'unpack'}, self.stamps())
        # The tree is exactly the tarball's.
        pristine = os.path.join(self.tmp, 'pristine')
        os.mkdir(pristine)
        with tarfile.open(self.art.tarball) as tar:
            tar.extractall(pristine)
        self.assertEqual(
            _tree_digest(os.path.join(pristine, 'linux-2.6.32')),
            _tree_digest(self.tree))

    def test_resume_after_a_failed_build(self):
        env = dict(self.env, STANDIN_FAIL_BUILD='1')
        proc = self.run_script(*self.rhel6_args(), env=env)
        self.assertExit(E_BUILD, proc)
        self.assertIn('[build] ERROR: the kernel build failed', proc.stderr)
        self.assertIn('stand-in build failure', proc.stderr)
        self.assertIn('run the same command again', proc.stderr)
        self.assertEqual({'fetch', 'verify', 'unpack', 'patch', 'configure'},
                         self.stamps())
        version_o = os.path.join(self.tree, 'init', 'version.o')
        built_before = os.stat(version_o).st_mtime_ns
        marker = os.path.join(self.tree, 'not-unpacked-again')
        _write(marker, '')

        # A dry run now shows what a rerun would do, and changes nothing.
        listing = sorted(os.walk(self.workdir))
        dry = self.run_script(*self.rhel6_args('--dry-run'))
        self.assertExit(0, dry)
        self.assertIn('[configure] skipped', dry.stdout)
        self.assertIn('[build] would run', dry.stdout)
        self.assertEqual(listing, sorted(os.walk(self.workdir)))

        with open(self.cc_log, 'w'):
            pass
        proc = self.run_script(*self.rhel6_args('--resume'))
        self.assertExit(0, proc)
        for step in ('fetch', 'verify', 'unpack', 'patch', 'configure'):
            self.assertIn('[%s] skipped: finished in an earlier run' % step,
                          proc.stdout)
        self.assertIn('[build] running', proc.stdout)
        self.assertIn('[collect] running', proc.stdout)
        self.assertTrue(os.path.exists(marker))
        # make went on from where it stopped.
        self.assertEqual(built_before, os.stat(version_o).st_mtime_ns)
        with open(self.cc_log) as f:
            compiled = f.read()
        self.assertIn('init/main.c', compiled)
        self.assertNotIn('init/version.c', compiled)
        self.assertEqual(2, len(self.debs()))
        self.assertChecksumsVerify()

    def test_resume_without_an_earlier_run(self):
        proc = self.run_script(*self.rhel6_args('--resume'))
        self.assertExit(E_USAGE, proc)
        self.assertIn('--resume: no earlier run in ' + self.workdir,
                      proc.stderr)
        self.assertEqual(set(), self.stamps())

    def test_changed_config_runs_configure_and_build_again(self):
        self.assertExit(0, self.run_script(*self.rhel6_args()))
        config = os.path.join(self.tmp, 'config')
        _write(config, CONFIG + 'CONFIG_EXTRA=y\n')
        proc = self.run_script(*self.rhel6_args(config=config))
        self.assertExit(0, proc)
        for step in ('fetch', 'verify', 'unpack', 'patch'):
            self.assertIn('[%s] skipped' % step, proc.stdout)
        self.assertIn('[configure] inputs changed since the earlier run',
                      proc.stdout)
        self.assertIn('[build] running', proc.stdout)
        root = self.unpack_deb(self.debs()[1])
        with open(os.path.join(root, 'boot', 'config-' + RELEASE)) as f:
            self.assertIn('CONFIG_EXTRA=y', f.read().splitlines())

    def path_without(self, tool):
        """A PATH with every command of this machine's but tool."""
        farm = os.path.join(self.tmp, 'path-without-' + tool)
        os.mkdir(farm)
        for directory in os.environ['PATH'].split(os.pathsep):
            if not os.path.isdir(directory):
                continue
            for name in os.listdir(directory):
                target = os.path.join(directory, name)
                link = os.path.join(farm, name)
                if (name != tool and not os.path.lexists(link) and
                        os.access(target, os.X_OK)):
                    os.symlink(target, link)
        return self.bin + os.pathsep + farm

    def test_missing_tool(self):
        env = dict(self.env, PATH=self.path_without('dpkg-deb'))
        proc = self.run_script(*self.rhel6_args(), env=env)
        self.assertExit(E_TOOL, proc)
        self.assertIn('[check] ERROR: missing tools: dpkg-deb (dpkg)',
                      proc.stderr)
        self.assertIn('apt-get install', proc.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.workdir,
                                                     'sources')))
        self.assertEqual(set(), self.stamps())

    def test_missing_compiler(self):
        args = self.rhel6_args()
        args[args.index('standin-cc')] = 'gcc-99'
        proc = self.run_script(*args)
        self.assertExit(E_TOOL, proc)
        self.assertIn('[check] ERROR: compiler gcc-99 not found',
                      proc.stderr)
        self.assertIn('--cc', proc.stderr)
        self.assertEqual(set(), self.stamps())

    def test_compiler_too_new_for_the_tree(self):
        # Like 2.6.32: include/linux/compiler-gcc.h includes the header of
        # the compiler's major version, and only gcc 3 and 4 have one.
        tarball = self.art.variant_tarball('oldgcc', gcc_headers=(3, 4))
        proc = self.run_script(*self.rhel6_args(tarball=tarball))
        self.assertExit(E_TOOL, proc)
        major = subprocess.run(['gcc', '-dumpversion'], capture_output=True,
                               text=True).stdout.strip().split('.')[0]
        self.assertIn('[configure] ERROR: standin-cc (gcc %s) is too new for '
                      'this tree' % major, proc.stderr)
        self.assertIn('gcc-3 gcc-4', proc.stderr)
        self.assertNotIn('configure', self.stamps())

    def test_makefile_that_needs_an_old_make(self):
        # 2.6.32's Makefile mixes implicit and normal rules, which GNU make
        # refuses since 3.82.
        tarball = self.art.variant_tarball('oldmake', makefile_extra=(
            '\nconfig %config: FORCE\n\t@true\n'))
        version = subprocess.run(['make', '--version'], capture_output=True,
                                 text=True).stdout.splitlines()[0]
        if version in ('GNU Make 3.80', 'GNU Make 3.81'):
            self.skipTest('this machine has %s' % version)
        proc = self.run_script(*self.rhel6_args(tarball=tarball))
        self.assertExit(E_TOOL, proc)
        self.assertIn("[configure] ERROR: this tree's Makefile needs GNU make"
                      " 3.81 or older", proc.stderr)
        self.assertNotIn('configure', self.stamps())

    def test_not_enough_disk(self):
        args = self.rhel6_args()
        args[args.index('--min-disk-gb') + 1] = '999999999'
        proc = self.run_script(*args)
        self.assertExit(E_DISK, proc)
        self.assertIn('[check] ERROR: not enough disk space', proc.stderr)
        self.assertIn('--min-disk-gb', proc.stderr)
        self.assertEqual(set(), self.stamps())


class TestDryRunAndUsage(_ScriptTest):

    def test_dry_run_changes_nothing(self):
        # (The compiler check runs, a test compile to /dev/null: the
        # wrapper logs it to cc.log.)
        before = sorted(os.listdir(self.tmp) + ['cc.log'])
        proc = self.run_script(*self.rhel6_args('--dry-run'))
        self.assertExit(0, proc)
        self.assertEqual(before, sorted(os.listdir(self.tmp)))
        self.assertFalse(os.path.exists(self.workdir))
        for step in STEPS:
            self.assertIn('[%s] would run' % step, proc.stdout)
        for command in ('+ cp -- %s %s/sources/linux-2.6.32.tar.xz' % (
                            self.art.tarball, self.workdir),
                        'gpg --batch', '--verify',
                        '+ tar -xf', 'patch -p1 -d', '--dry-run',
                        '+ make -C %s ARCH=x86_64 CC=standin-cc' % self.tree,
                        'bindeb-pkg', 'sha256sum'):
            self.assertIn(command, proc.stdout)
        self.assertIn('nothing was changed', proc.stdout)

    def test_usage_errors_and_help(self):
        proc = self.run_script('--help')
        self.assertExit(0, proc)
        for line in ('0    success', '3    a tool or the compiler',
                     '6    verification failed', '8    the patch does not',
                     '10   building the kernel'):
            self.assertIn(line, proc.stdout)
        for args, message in (
                (['--branch', 'rhel7', '--version', VERSION],
                 '--branch must be rhel6 or vz7'),
                (['--branch', 'rhel6', '--version', '1.2.3'],
                 "--version '1.2.3' is not a rhel6 version"),
                (['--branch', 'rhel6'], '--version is required'),
                (self.rhel6_args(config=os.path.join(self.tmp, 'nope')),
                 'no such readable file'),
                (self.rhel6_args('--jobs', '0'), '--jobs must be'),
                (self.rhel6_args('--no-verify'), '--no-verify contradicts'),
                (['--frobnicate'], 'unknown option: --frobnicate')):
            proc = self.run_script(*args)
            self.assertExit(E_USAGE, proc)
            self.assertIn(message, proc.stderr)
        self.assertFalse(os.path.exists(self.workdir))

    def test_script_is_shellcheck_clean(self):
        if shutil.which('shellcheck') is None:
            self.skipTest('shellcheck is not installed')
        proc = subprocess.run(['shellcheck', SCRIPT], capture_output=True,
                              text=True)
        self.assertEqual(0, proc.returncode, proc.stdout)


@testtools.skipUnless(os.environ.get('NOVA_OPENVZ_SLOW_TESTS') == '1',
                      'slow: set NOVA_OPENVZ_SLOW_TESTS=1 to build a real '
                      'kernel (Debian linux-source, tinyconfig)')
class TestRealKernel(_ScriptTest):
    """Build Debian's kernel source with a tiny config through the script.

    Needs linux-source (/usr/src/linux-source-*.tar.xz), gcc, make, flex,
    bison, bc, libelf-dev and about 3 GB of disk; a few minutes on 2 cores.
    Debian's linux-source has no packaging targets (no
    scripts/package/Makefile), so this takes the script's own dpkg-deb
    packaging path.
    """

    def test_builds_debian_linux_source_with_tinyconfig(self):
        sources = sorted(glob.glob('/usr/src/linux-source-*.tar.xz'))
        if not sources:
            self.skipTest('needs linux-source (apt-get install linux-source)')
        missing = [tool for tool in ('flex', 'bison', 'bc', 'perl')
                   if shutil.which(tool) is None]
        if missing:
            self.skipTest('needs %s' % ', '.join(missing))
        tarball = sources[-1]
        # tinyconfig from the same tree, as the config to build with.
        scratch = os.path.join(self.tmp, 'scratch')
        os.mkdir(scratch)
        subprocess.run(['tar', '-xf', tarball, '-C', scratch], check=True)
        top = os.path.join(scratch, os.listdir(scratch)[0])
        subprocess.run(['make', '-C', top, 'ARCH=x86_64', 'tinyconfig'],
                       check=True, capture_output=True)
        config = os.path.join(self.tmp, 'tiny.config')
        shutil.copy(os.path.join(top, '.config'), config)
        shutil.rmtree(scratch)

        proc = self.run_script(
            '--branch', 'vz7', '--version', 'debian-linux-source-tiny',
            '--arch', 'x86_64', '--source-tarball', tarball,
            '--config', config, '--no-verify', '--cc', 'gcc',
            '--jobs', str(os.cpu_count() or 1), '--min-disk-gb', '3',
            '--workdir', self.workdir, '--output', self.output)
        self.assertExit(0, proc)
        self.assertIn('no bindeb-pkg or deb-pkg target', proc.stdout)
        debs = self.debs()
        self.assertEqual(1, len(debs), debs)
        self.assertChecksumsVerify()
        root = self.unpack_deb(debs[0])
        images = glob.glob(os.path.join(root, 'boot', 'vmlinuz-*'))
        self.assertEqual(1, len(images))
        with open(images[0], 'rb') as f:
            f.seek(0x202)
            self.assertEqual(b'HdrS', f.read(4))  # an x86 bzImage
