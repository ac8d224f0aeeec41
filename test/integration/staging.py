"""A staged install: `meson install --destdir` of the build into a temporary directory."""

import json
import os
import shutil
import subprocess

from wjtest import BUILD


def run(args, env=None, timeout=300):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(args, capture_output=True, text=True, env=e, timeout=timeout)


class Stage:
    """The build installed under dest. ok is False (and out holds why) when the install failed."""

    def __init__(self, dest):
        self.dest = dest
        self.meson = shutil.which("meson")
        # meson test runs this from inside the build directory's test run: never rebuild here.
        p = run([self.meson, "install", "--no-rebuild", "--destdir", dest, "-C", BUILD])
        self.ok = p.returncode == 0
        self.out = p.stdout[-3000:] + p.stderr[-3000:]
        p = run([self.meson, "introspect", "--buildoptions", BUILD])
        self.opts = {o["name"]: o["value"] for o in json.loads(p.stdout)}
        self.prefix = self.opts["prefix"]
        self.installed = []
        for root, _, files in os.walk(dest):
            for name in files:
                self.installed.append("/" + os.path.relpath(os.path.join(root, name), dest))

    def under(self, d):
        """An install directory option as an absolute path."""
        return os.path.join(self.prefix, self.opts[d])

    def inst(self, path):
        """The staged location of an absolute install path."""
        return os.path.join(self.dest, path.lstrip("/"))

    def find(self, suffix):
        """Every installed file whose path ends in /suffix."""
        return [f for f in self.installed if f.endswith("/" + suffix)]
