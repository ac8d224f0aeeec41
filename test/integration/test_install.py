"""meson install into a temporary DESTDIR: every file an operator needs lands where the
programs and units expect it.

Checks: binaries in sbindir/bindir, both units in a systemd/system directory with ExecStart=
naming the installed daemon and its built-in default configuration, the configuration
template at that default path with mode 0640 (and accepted by the installed daemon once the
units' credentials exist), the logrotate file next to it in logrotate.d (and working, when
logrotate is installed), sysusers.d/wdt2jdy.conf, the three manual pages."""

import os
import re
import shutil
import stat
import subprocess
import sys

from staging import Stage, run
from wjtest import check, finish, tempdir

meson = shutil.which("meson")
if not meson:
    print("meson not found: skipped")
    sys.exit(77)


def settings(path):
    out = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and line[0] not in "#;[" and "=" in line:
                k, v = line.split("=", 1)
                out.setdefault(k, []).append(v)
    return out


tmp = tempdir()
stage = Stage(os.path.join(tmp, "dest"))
if not check(stage.ok, "meson install --destdir succeeds"):
    print(stage.out)
    finish()
dest, prefix, installed = stage.dest, stage.prefix, stage.installed
under, inst = stage.under, stage.inst
print("# installed:\n#   " + "\n#   ".join(sorted(installed)))


def one(suffix):
    """The single installed file whose path ends in suffix, or None."""
    hits = stage.find(suffix)
    check(len(hits) == 1, "exactly one installed .../%s (%s)" % (suffix, hits))
    return hits[0] if len(hits) == 1 else None


daemon = os.path.join(under("sbindir"), "wdt2jdyd")
ctl = os.path.join(under("bindir"), "wdt2jdyctl")
for path in (daemon, ctl):
    f = inst(path)
    check(os.path.isfile(f) and os.access(f, os.X_OK), "%s installed and executable" % path)

p = run([inst(daemon), "--version"])
check(p.returncode == 0 and p.stdout.startswith("wdt2jdyd "), "installed wdt2jdyd --version runs")
p = run([inst(ctl), "--version"])
check(p.returncode == 0 and p.stdout.startswith("wdt2jdyctl "),
      "installed wdt2jdyctl --version runs")

# The daemon's built-in default configuration path is where the template goes.
p = run([inst(daemon), "--help"])
m = re.search(r"\(default (/\S+)\)", p.stdout)
default_conf = m.group(1) if m else None
check(default_conf is not None, "wdt2jdyd --help names its default configuration")
conf = one("wdt2jdy/wdt2jdy.json")
check(conf is not None and conf == default_conf,
      "the template is installed at the daemon's default path (%s, %s)" % (conf, default_conf))
if conf:
    mode = stat.S_IMODE(os.stat(inst(conf)).st_mode)
    check(mode == 0o640, "the template has mode 0640 (got %04o)" % mode)

logrotate_file = one("logrotate.d/wdt2jdy")
if logrotate_file and conf:
    check(os.path.dirname(os.path.dirname(logrotate_file)) ==
          os.path.dirname(os.path.dirname(conf)),
          "logrotate.d/wdt2jdy lies in the same etc directory as the configuration")
one("sysusers.d/wdt2jdy.conf")
rules = os.path.join(under("datadir"), "doc", "wdt2jdy", "prometheus-wdt2jdy.rules.yml")
check(rules in installed, "the example Prometheus alert rules are installed as %s" % rules)

for page, sec in [("wdt2jdyd.8", "8"), ("wdt2jdyctl.8", "8"), ("wdt2jdy.json.5", "5")]:
    path = os.path.join(under("mandir"), "man" + sec, page)
    check(path in installed, "manual page %s installed" % path)

creds = {}
for unit in ("wdt2jdyd.service", "wdt2jdyd@.service"):
    path = one("systemd/system/" + unit)
    if not path:
        continue
    s = settings(inst(path))
    argv = s.get("ExecStart", [""])[0].split()
    check(argv[:1] == [daemon], "%s: ExecStart= runs the installed %s" % (unit, daemon))
    want = default_conf if "@" not in unit else \
        os.path.join(os.path.dirname(default_conf or ""), "%i.json")
    check(argv[1:] == ["-c", want], "%s: ExecStart= passes -c %s" % (unit, want))
    if "@" not in unit:
        creds = dict(v.split(":", 1) for v in s.get("LoadCredential", []))

# The installed daemon accepts the installed template once the units' credentials exist
# (and refuses it without them, so the check means something).
if conf and creds:
    cred_dir = os.path.join(tmp, "credentials")
    os.makedirs(cred_dir)
    for i, name in enumerate(sorted(creds)):
        with open(os.path.join(cred_dir, name), "w") as f:
            f.write("test-secret-%d-value\n" % i)
    env = {"CREDENTIALS_DIRECTORY": cred_dir}
    p = run([inst(daemon), "--check", "-c", inst(conf)], env)
    check(p.returncode == 0 and p.stdout.strip() == "configuration OK",
          "the installed template passes --check with the units' credentials" +
          ("\n" + p.stderr if p.stderr else ""))
    e = dict(os.environ)
    e.pop("CREDENTIALS_DIRECTORY", None)
    p = subprocess.run([inst(daemon), "--check", "-c", inst(conf)], capture_output=True,
                       text=True, env=e, timeout=60)
    check(p.returncode == 78 and "CREDENTIALS_DIRECTORY" in p.stderr,
          "without the credentials the template is refused with 78")

# logrotate: rotate a copy whose paths point into tmp; the postrotate command must not fail
# even where systemd is not running.
lr = shutil.which("logrotate")
if lr and logrotate_file:
    with open(inst(logrotate_file)) as f:
        text = f.read()
    check("/var/log/wdt2jdy/*.log" in text and "/var/log/wdt2jdy/*/*.log" in text,
          "logrotate covers /var/log/wdt2jdy/*.log and the instances' /var/log/wdt2jdy/*/*.log")
    check("systemctl kill -s HUP wdt2jdyd.service 'wdt2jdyd@*.service'" in text,
          "logrotate sends SIGHUP to wdt2jdyd.service and every instance")
    logs = os.path.join(tmp, "log")
    os.makedirs(os.path.join(logs, "acme"))
    for f in ("wdt2jdy.log", "acme/wdt2jdy.log"):
        with open(os.path.join(logs, f), "w") as fh:
            fh.write("ts=2026-11-29T12:00:00+08:00 level=info msg=\"line\"\n")
    with open(os.path.join(logs, "empty.log"), "w"):
        pass
    cfg = os.path.join(tmp, "logrotate.conf")
    with open(cfg, "w") as f:
        f.write(text.replace("/var/log/wdt2jdy/", logs + "/"))
    os.chmod(cfg, 0o644)
    p = run([lr, "-f", "-s", os.path.join(tmp, "logrotate.state"), cfg])
    check(p.returncode == 0 and "error" not in p.stderr.lower(),
          "logrotate -f accepts the file (rc %d)%s" %
          (p.returncode, "\n" + p.stderr if p.stderr else ""))
    check(os.path.isfile(os.path.join(logs, "wdt2jdy.log.1")) and
          os.path.isfile(os.path.join(logs, "acme", "wdt2jdy.log.1")),
          "both the service's and an instance's log were rotated (uncompressed: delaycompress)")
    check(not os.path.exists(os.path.join(logs, "empty.log.1")), "an empty log is left alone")
    with open(os.path.join(logs, "wdt2jdy.log"), "w") as fh:  # as reopened after SIGHUP
        fh.write("ts=2026-11-30T12:00:00+08:00 level=info msg=\"line\"\n")
    p = run([lr, "-f", "-s", os.path.join(tmp, "logrotate.state"), cfg])
    check(p.returncode == 0 and os.path.isfile(os.path.join(logs, "wdt2jdy.log.2.gz")),
          "a second rotation compresses the previous one")
else:
    print("# logrotate not found: rotation not exercised")

shutil.rmtree(tmp, ignore_errors=True)
finish()
