"""`systemctl enable` works on an install: both units carry [Install] WantedBy=multi-user.target,
so enabling the service, and an instance of the template, links it into
multi-user.target.wants (checked offline with systemctl --root on a staged install), and
disabling removes the link. Exit 77 when systemctl (or meson) is missing."""

import os
import shutil
import sys

from staging import Stage, run
from wjtest import check, finish, tempdir

systemctl = shutil.which("systemctl")
if not systemctl or not shutil.which("meson"):
    print("systemctl or meson not found: skipped")
    sys.exit(77)

tmp = tempdir()
stage = Stage(os.path.join(tmp, "root"))
if not check(stage.ok, "meson install --destdir succeeds"):
    print(stage.out)
    finish()
wants = os.path.join(stage.dest, "etc/systemd/system/multi-user.target.wants")

for unit, template in [("wdt2jdyd.service", "wdt2jdyd.service"),
                       ("wdt2jdyd@tenant1.service", "wdt2jdyd@.service"),
                       ("wdt2jdyd@tenant2.service", "wdt2jdyd@.service")]:
    installed = stage.find("systemd/system/" + template)
    if not check(len(installed) == 1, "%s is installed once (%s)" % (template, installed)):
        continue
    p = run([systemctl, "--root=" + stage.dest, "enable", unit], timeout=60)
    check(p.returncode == 0 and "no installation config" not in p.stderr,
          "systemctl --root enable %s succeeds (rc %d)%s" %
          (unit, p.returncode, "\n" + p.stderr if p.returncode else ""))
    link = os.path.join(wants, unit)
    check(os.path.islink(link) and os.readlink(link) == installed[0],
          "%s is linked into multi-user.target.wants, to %s (%s)" %
          (unit, installed[0], os.readlink(link) if os.path.islink(link) else "no link"))
    p = run([systemctl, "--root=" + stage.dest, "is-enabled", unit], timeout=60)
    check(p.stdout.strip() == "enabled", "systemctl --root is-enabled %s: %s" %
          (unit, p.stdout.strip()))

p = run([systemctl, "--root=" + stage.dest, "disable", "wdt2jdyd@tenant1.service"], timeout=60)
check(p.returncode == 0 and not os.path.lexists(os.path.join(wants, "wdt2jdyd@tenant1.service"))
      and os.path.islink(os.path.join(wants, "wdt2jdyd@tenant2.service")),
      "disable removes one instance's link and keeps the other's")

shutil.rmtree(tmp, ignore_errors=True)
finish()
