"""The systemd units and the manual pages as shipped.

systemd-analyze verify must print nothing for both units (the unit's binary rewritten to the
built daemon, the Documentation= pages found in a MANPATH holding this tree's pages), the
offline security assessment must rate both at most 2.0, the settings the daemon relies on
must be there, the credential names must be those of etc/wdt2jdy.json, and the pages must
render without a single groff or man warning. Exit 77 when systemd-analyze is missing."""

import os
import re
import shutil
import subprocess
import sys

from wjtest import BUILD, DAEMON, SOURCE, check, finish, tempdir

MAX_EXPOSURE = 2.0
UNITS = ["wdt2jdyd.service", "wdt2jdyd@.service"]
PAGES = [("wdt2jdyd.8", "8"), ("wdt2jdyctl.8", "8"), ("wdt2jdy.json.5", "5")]

analyze = shutil.which("systemd-analyze")
if not analyze:
    print("systemd-analyze not found: skipped")
    sys.exit(77)


def run(args, env=None, timeout=120):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(args, capture_output=True, text=True, env=e, timeout=timeout)


def unit_settings(text):
    """[Service]/[Unit] assignments as a dict of lists, in file order."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;[" or "=" not in line:
            continue
        k, v = line.split("=", 1)
        out.setdefault(k.strip(), []).append(v.strip())
    return out


tmp = tempdir()

# This tree's pages under MANPATH, so Documentation=man:... resolves to them.
mandir = os.path.join(tmp, "man")
for page, sec in PAGES:
    os.makedirs(os.path.join(mandir, "man" + sec), exist_ok=True)
    shutil.copy(os.path.join(SOURCE, "man", page), os.path.join(mandir, "man" + sec, page))
have_man = shutil.which("man") is not None

# The credential names the production template asks for.
with open(os.path.join(SOURCE, "etc", "wdt2jdy.json")) as f:
    template = f.read()
template_creds = set(re.findall(r'^\s*"(?:app|client)_secret_credential"\s*:\s*"([^"]+)"',
                                template, re.M))
check(template_creds == {"wdt-app-secret", "kingdee-client-secret"},
      "etc/wdt2jdy.json names the credentials wdt-app-secret and kingdee-client-secret")

udir = os.path.join(tmp, "units")
os.makedirs(udir)
for unit in UNITS:
    built = os.path.join(BUILD, "systemd", unit)
    if not check(os.path.isfile(built), "%s was generated in the build directory" % unit):
        continue
    with open(built) as f:
        text = f.read()
    check(not re.search(r"@[a-z_]+@", text), "%s: every @variable@ was substituted" % unit)
    s = unit_settings(text)
    exec_start = s.get("ExecStart", [""])
    check(len(exec_start) == 1, "%s: one ExecStart=" % unit)
    argv = exec_start[0].split()
    check(len(argv) == 3 and os.path.basename(argv[0]) == "wdt2jdyd" and
          os.path.isabs(argv[0]) and argv[1] == "-c",
          "%s: ExecStart= runs wdt2jdyd -c FILE from an absolute path (%s)" %
          (unit, exec_start[0]))
    tenant = "@" in unit
    want_conf = "/%i.json" if tenant else "/wdt2jdy.json"
    check(len(argv) == 3 and argv[2].endswith(want_conf),
          "%s: the configuration is ...%s" % (unit, want_conf))
    for key, want in [("Type", "notify"), ("NotifyAccess", "main"), ("Restart", "on-failure"),
                      ("RestartPreventExitStatus", "73 78"), ("WatchdogSec", "60s"),
                      ("ExecReload", "/bin/kill -HUP $MAINPID"), ("DynamicUser", "yes"),
                      ("ConfigurationDirectory", "wdt2jdy"),
                      ("StateDirectory", "wdt2jdy/%i" if tenant else "wdt2jdy"),
                      ("LogsDirectory", "wdt2jdy/%i" if tenant else "wdt2jdy"),
                      ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
                      ("LimitCORE", "0"), ("WantedBy", "multi-user.target")]:
        check(s.get(key) == [want], "%s: %s=%s (got %s)" % (unit, key, want, s.get(key)))
    check("TimeoutStopSec" in s, "%s: TimeoutStopSec= is set" % unit)
    creds = {}
    for v in s.get("LoadCredential", []):
        name, _, path = v.partition(":")
        creds[name] = path
    check(set(creds) == template_creds,
          "%s: LoadCredential= provides exactly the template's credentials (%s)" %
          (unit, sorted(creds)))
    cred_dir = os.path.dirname(argv[2]) + ("/%i" if tenant else "")
    check(all(p == cred_dir + "/" + n for n, p in creds.items()),
          "%s: credentials are read from %s/NAME" % (unit, cred_dir))

    # verify needs the ExecStart binary to exist: point it at the built daemon.
    local = os.path.join(udir, unit)
    with open(local, "w") as f:
        f.write(text.replace(argv[0], DAEMON, 1))
    env = {"MANPATH": mandir}
    args = [analyze, "verify"] + ([] if have_man else ["--man=no"]) + [local]
    p = run(args, env)
    out = (p.stdout + p.stderr).strip()
    check(p.returncode == 0 and out == "",
          "%s: systemd-analyze verify prints nothing (rc %d)%s" %
          (unit, p.returncode, ("\n" + out) if out else ""))

    p = run([analyze, "security", "--offline=yes", "--no-pager", local])
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", p.stdout)
    score = float(m.group(1)) if m else None
    print("# %s exposure %s" % (unit, score))
    check(score is not None and score <= MAX_EXPOSURE,
          "%s: offline security exposure %s <= %.1f" % (unit, score, MAX_EXPOSURE))

# The check above can fail: a unit with an unknown key makes verify talk.
bad = os.path.join(udir, "wj-bad.service")
with open(bad, "w") as f:
    f.write("[Service]\nExecStart=%s -c /nonexistent.json\nNoSuchSetting=1\n" % DAEMON)
p = run([analyze, "verify", "--man=no", bad])
check("NoSuchSetting" in p.stdout + p.stderr, "systemd-analyze verify reports an unknown key")

# Manual pages: no warning of any kind.
groff = shutil.which("groff")
for page, sec in PAGES:
    path = os.path.join(SOURCE, "man", page)
    with open(path) as f:
        first = f.readline()
    check(first.startswith(".TH %s %s " % (page.rsplit(".", 1)[0].upper(), sec)),
          "%s: .TH names the page and section %s" % (page, sec))
    if groff:
        p = run([groff, "-man", "-ww", "-z", path])
        check(p.returncode == 0 and p.stderr == "",
              "%s: groff -man -ww -z is silent%s" % (page, "\n" + p.stderr if p.stderr else ""))
    if have_man:
        p = run(["man", "--warnings", "-l", path], {"MANWIDTH": "80", "MANPAGER": "cat",
                                                   "PAGER": "cat", "LC_ALL": "C.UTF-8"})
        check(p.returncode == 0 and p.stderr == "" and "NAME" in p.stdout,
              "%s: man --warnings -l renders it without warnings%s" %
              (page, "\n" + p.stderr if p.stderr else ""))
if not groff and not have_man:
    print("# neither groff nor man found: pages not rendered")

# The example of wdt2jdy.json(5) is a valid configuration.
with open(os.path.join(SOURCE, "man", "wdt2jdy.json.5")) as f:
    m = re.search(r"^\.SH EXAMPLE\n\.RS 4\n\.nf\n(.*?)^\.fi\n", f.read(), re.M | re.S)
check(m is not None, "wdt2jdy.json(5) has an EXAMPLE block")
if m:
    example = os.path.join(tmp, "example.json")
    with open(example, "w") as f:
        f.write(m.group(1).replace("\\-", "-"))
    cred = os.path.join(tmp, "credentials")
    os.makedirs(cred)
    for name in template_creds:
        with open(os.path.join(cred, name), "w") as f:
            f.write("example-secret-" + name + "\n")
    p = run([DAEMON, "--check", "-c", example], {"CREDENTIALS_DIRECTORY": cred})
    check(p.returncode == 0 and p.stdout.strip() == "configuration OK",
          "the example of wdt2jdy.json(5) passes wdt2jdyd --check" +
          ("\n" + p.stderr if p.stderr else ""))

# The pages document every command line flag and command the programs print in --help.
for prog, page in [(DAEMON, "wdt2jdyd.8"),
                   (os.environ.get("WJ_CTL", os.path.join(BUILD, "daemon", "wdt2jdyctl")),
                    "wdt2jdyctl.8")]:
    p = run([prog, "--help"])
    with open(os.path.join(SOURCE, "man", page)) as f:
        roff = f.read().replace("\\-", "-")
    words = set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", p.stdout))
    words |= set(re.findall(r"^  ([a-z][a-z-]+)", p.stdout, re.M))
    missing = sorted(w for w in words if w not in roff)
    check(p.returncode == 0 and words and not missing,
          "%s documents every option and command of --help (missing: %s)" % (page, missing))

shutil.rmtree(tmp, ignore_errors=True)
finish()
