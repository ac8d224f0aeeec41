"""The Debian package (debian/, built with dpkg-buildpackage): what it ships and what its
maintainer scripts do.

The package is WJ_DEB when set, else wdt2jdy_VERSION-1_*.deb (VERSION from meson.build) in
build-ci-deb/ of the source tree (where .ci/run builds it) or next to the source tree (where
dpkg-buildpackage puts it). Without one the test is skipped (exit 77).

Checks: the daemon, wdt2jdyctl, both units (with an [Install] section), the sysusers file,
the three manual pages, the logrotate file and the configuration template (mode 0640, the
same text as etc/wdt2jdy.json) are in the package; the template and the logrotate file are
conffiles; postinst creates the user and never enables a unit on a first install; postrm
removes the state and the logs on purge only (run against a temporary root through
DPKG_ROOT, every outside command replaced by a recorder); lintian reports no error."""

import glob
import os
import re
import shutil
import subprocess
import sys

from wjtest import SOURCE, check, finish, tempdir


def project_version():
    with open(os.path.join(SOURCE, "meson.build")) as f:
        m = re.search(r"version:\s*'([^']+)'", f.read())
    return m.group(1)


VERSION = project_version()


def find_deb():
    if os.environ.get("WJ_DEB"):
        return os.environ["WJ_DEB"]
    name = "wdt2jdy_%s-1_*.deb" % VERSION
    for d in (os.path.join(SOURCE, "build-ci-deb"), os.path.join(SOURCE, "..")):
        found = sorted(glob.glob(os.path.join(d, name)))
        if found:
            return found[-1]
    return None


DEB = find_deb()
if not DEB:
    print("no wdt2jdy_%s-1_*.deb (set WJ_DEB or build it): skipped" % VERSION)
    sys.exit(77)
if not shutil.which("dpkg-deb"):
    print("dpkg-deb not found: skipped")
    sys.exit(77)
if not check(os.path.isfile(DEB), "the package %s exists" % DEB):
    finish()
print("# package " + os.path.abspath(DEB))


def run(args, env=None, timeout=300):
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)


# ---- fields and contents ---------------------------------------------------------------------

fields = {}
for name in ("Package", "Version", "Architecture"):
    fields[name] = run(["dpkg-deb", "-f", DEB, name]).stdout.strip()
check(fields["Package"] == "wdt2jdy", "Package: wdt2jdy")
check(fields["Version"] == VERSION + "-1",
      "Version %s is meson.build's %s-1" % (fields["Version"], VERSION))
check(os.path.basename(DEB) == "wdt2jdy_%s_%s.deb" % (fields["Version"], fields["Architecture"]),
      "the file name says the package's version and architecture")

listing = {}  # path without the leading "." -> mode string
for line in run(["dpkg-deb", "-c", DEB]).stdout.splitlines():
    parts = line.split()
    if len(parts) >= 6:
        listing[parts[5].lstrip(".")] = parts[0]


def shipped(*candidates):
    """The first of the paths that the package holds, or None."""
    return next((c for c in candidates if c in listing), None)


def lib_or_usr_lib(rel):
    return shipped("/usr/lib/" + rel, "/lib/" + rel)


for path in ("/usr/sbin/wdt2jdyd", "/usr/bin/wdt2jdyctl", "/etc/logrotate.d/wdt2jdy",
             "/usr/share/man/man8/wdt2jdyd.8.gz", "/usr/share/man/man8/wdt2jdyctl.8.gz",
             "/usr/share/man/man5/wdt2jdy.json.5.gz", "/usr/share/doc/wdt2jdy/copyright"):
    check(path in listing, "dpkg-deb -c lists " + path)
units = {u: lib_or_usr_lib("systemd/system/" + u) for u in ("wdt2jdyd.service", "wdt2jdyd@.service")}
for u, path in units.items():
    check(path is not None, "dpkg-deb -c lists the unit " + u)
sysusers = lib_or_usr_lib("sysusers.d/wdt2jdy.conf")
check(sysusers is not None, "dpkg-deb -c lists sysusers.d/wdt2jdy.conf")
conf = "/etc/wdt2jdy/wdt2jdy.json"
check(listing.get(conf) == "-rw-r-----", "dpkg-deb -c lists %s with mode 0640 (%s)"
      % (conf, listing.get(conf)))
check(not [p for p in listing if p.startswith(("/var/", "/usr/local/"))],
      "nothing under /var or /usr/local is shipped (state is made at run time)")

conffiles = run(["dpkg-deb", "-I", DEB, "conffiles"]).stdout.split()
check(conf in conffiles, "conffiles lists " + conf)
check("/etc/logrotate.d/wdt2jdy" in conffiles, "conffiles lists /etc/logrotate.d/wdt2jdy")

tmp = tempdir()
root = os.path.join(tmp, "x")
run(["dpkg-deb", "-x", DEB, root])


def text(path):
    """The file's text, "" when it is missing."""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


check(text(root + conf) == text(os.path.join(SOURCE, "etc", "wdt2jdy.json")),
      "the shipped template is etc/wdt2jdy.json")
if sysusers:
    check(text(root + sysusers) == text(os.path.join(SOURCE, "systemd", "sysusers.conf")),
          "the shipped sysusers file is systemd/sysusers.conf")
main_unit = text(root + units["wdt2jdyd.service"]) if units["wdt2jdyd.service"] else ""
check("ExecStart=/usr/sbin/wdt2jdyd -c /etc/wdt2jdy/wdt2jdy.json" in main_unit,
      "wdt2jdyd.service starts /usr/sbin/wdt2jdyd with /etc/wdt2jdy/wdt2jdy.json")
for u, path in units.items():
    body = text(root + path) if path else ""
    check(re.search(r"^\[Install\]\s*\nWantedBy=multi-user.target", body, re.M) is not None,
          u + " can be enabled ([Install] WantedBy=multi-user.target)")

# ---- maintainer scripts ----------------------------------------------------------------------

ctl = os.path.join(tmp, "DEBIAN")
run(["dpkg-deb", "-e", DEB, ctl])
stubs = os.path.join(tmp, "stubs")
calls = os.path.join(tmp, "calls")
os.makedirs(stubs)
# Every command a maintainer script may run on the system is recorded instead. Exit codes
# play a first install: no unit was ever installed or enabled by the package
# (debian-installed false, was-enabled true as deb-systemd-helper answers without state),
# the group exists, there is no stat override yet.
exits = {"deb-systemd-helper": 'case "$*" in *debian-installed*) exit 1;; esac; exit 0',
         "dpkg-statoverride": 'case "$*" in *--list*) exit 1;; esac; exit 0'}
for cmd in ("systemd-sysusers", "deb-systemd-helper", "deb-systemd-invoke", "systemctl",
            "dpkg-statoverride", "getent", "adduser", "deluser", "useradd", "userdel",
            "groupadd", "groupdel", "chown", "chgrp", "chmod", "update-rc.d", "invoke-rc.d"):
    with open(os.path.join(stubs, cmd), "w") as f:
        f.write('#!/bin/sh\necho "%s $*" >> "%s"\n%s\n' % (cmd, calls, exits.get(cmd, "exit 0")))
    os.chmod(os.path.join(stubs, cmd), 0o755)


def script(name, *args, dpkg_root):
    """Run DEBIAN/name with args; the recorded outside calls as a list of lines."""
    if os.path.exists(calls):
        os.unlink(calls)
    env = dict(os.environ, PATH=stubs + ":" + os.environ.get("PATH", "/usr/bin:/bin"),
               DPKG_ROOT=dpkg_root, DPKG_MAINTSCRIPT_PACKAGE="wdt2jdy",
               DPKG_MAINTSCRIPT_NAME=name)
    p = run(["sh", "-e", os.path.join(ctl, name)] + list(args), env=env, timeout=60)
    check(p.returncode == 0, "%s %s exits 0 (%s)" % (name, " ".join(a for a in args if a),
                                                     (p.stdout + p.stderr).strip()[-300:]))
    return text(calls).splitlines() if os.path.exists(calls) else []


postinst = text(os.path.join(ctl, "postinst"))
check(not re.search(r"systemctl[^\n]*\b(enable|start)\b", postinst),
      "postinst never runs systemctl enable or start")
done = script("postinst", "configure", "", dpkg_root=os.path.join(tmp, "noroot"))
check(any(c.startswith("systemd-sysusers") and c.endswith("wdt2jdy.conf") for c in done),
      "postinst configure creates the user with systemd-sysusers wdt2jdy.conf")
check(not [c for c in done if re.match(r"deb-systemd-helper (--quiet )?enable", c)],
      "postinst configure on a first install enables no unit (%s)" % done)
check([c for c in done if c.startswith("dpkg-statoverride")
       and c.endswith("--update --add root wdt2jdy 0640 " + conf)],
      "postinst makes the template root:wdt2jdy 0640 through dpkg-statoverride")

postrm = text(os.path.join(ctl, "postrm"))
# Never run a script that could remove something outside the temporary root.
unsafe = [line for line in postrm.splitlines()
          if re.match(r"\s*rm\b", line) and "/var/" in line and "$DPKG_ROOT" not in line]
if check(not unsafe, "every rm of /var in postrm is under $DPKG_ROOT (%s)" % unsafe):
    state = ("var/lib/wdt2jdy/data.mdb", "var/lib/private/wdt2jdy/data.mdb",
             "var/log/wdt2jdy/wdt2jdy.log", "var/log/private/wdt2jdy/wdt2jdy.log")
    for action in ("remove", "upgrade", "failed-upgrade", "abort-install", "disappear", "purge"):
        fake = os.path.join(tmp, "root-" + action)
        for rel in state:
            os.makedirs(os.path.dirname(os.path.join(fake, rel)), exist_ok=True)
            with open(os.path.join(fake, rel), "w") as f:
                f.write("kept\n")
        args = [action] + (["0.0.1-1"] if "upgrade" in action else [])
        done = script("postrm", *args, dpkg_root=fake)
        left = [rel for rel in state if os.path.exists(os.path.join(fake, rel))]
        if action == "purge":
            check(not left, "postrm purge removes the state and the logs (left: %s)" % left)
            check(not [d for d in ("var/lib/wdt2jdy", "var/log/wdt2jdy")
                       if os.path.lexists(os.path.join(fake, d))],
                  "postrm purge removes /var/lib/wdt2jdy and /var/log/wdt2jdy themselves")
        else:
            check(len(left) == len(state), "postrm %s keeps the state and the logs" % action)
            check(not [c for c in done if "purge" in c or "--remove" in c],
                  "postrm %s purges no unit state and no stat override (%s)" % (action, done))

# ---- lintian ---------------------------------------------------------------------------------

if check(shutil.which("lintian") is not None, "lintian is installed"):
    p = run(["lintian", DEB], timeout=600)
    out = (p.stdout + p.stderr).splitlines()
    errors = [line for line in out if line.startswith("E:")]
    for line in out:
        print("# lintian: " + line)
    check(not errors, "lintian reports no error (%d E: lines)" % len(errors))

shutil.rmtree(tmp, ignore_errors=True)
finish()
