"""The daemon as a process: start, log and status files, SIGHUP reload (valid, broken, log
rotation), sd_notify messages, SIGTERM exit, --check and exit codes."""

import json
import os
import shutil
import signal
import subprocess

from wjtest import (DAEMON, Daemon, NotifySocket, base_config, check, finish, read, read_json,
                    tempdir, wait_for, write_config)

tmp = tempdir()
cfg_path = os.path.join(tmp, "wdt2jdy.json")
log_path = os.path.join(tmp, "wdt2jdy.log")
status_path = os.path.join(tmp, "status.json")
cfg = base_config(tmp)
write_config(cfg_path, cfg, comment="integration test config")

# --check and exit codes
p = subprocess.run([DAEMON, "--check", "-c", cfg_path], capture_output=True, text=True)
check(p.returncode == 0 and p.stdout.strip() == "configuration OK", "--check accepts a good config")
bad_path = os.path.join(tmp, "bad.json")
with open(bad_path, "w") as f:
    f.write('{\n  "state_dir": "/tmp/x",\n  "wdt": {\n    "timeout": 30\n  }\n}\n')
p = subprocess.run([DAEMON, "--check", "-c", bad_path], capture_output=True, text=True)
check(p.returncode == 78, "--check refuses a bad config with exit 78 (got %d)" % p.returncode)
check("wdt.timeout" in p.stderr, "the error names the JSON path wdt.timeout")
check("bad.json" in p.stderr, "the error names the file")
p = subprocess.run([DAEMON, "--version"], capture_output=True, text=True)
check(p.returncode == 0 and p.stdout.startswith("wdt2jdyd "), "--version")
p = subprocess.run([DAEMON, "-c", os.path.join(tmp, "missing.json")], capture_output=True,
                   text=True)
check(p.returncode == 78, "a missing config file is a config error (78)")

# state directory that cannot be created → 73
blocker = os.path.join(tmp, "blocker")
open(blocker, "w").close()
cfg73 = base_config(tmp)
cfg73["state_dir"] = os.path.join(blocker, "state")
cfg73["log"] = {"file": os.path.join(tmp, "73.log"), "level": "info"}
cfg73_path = os.path.join(tmp, "73.json")
write_config(cfg73_path, cfg73)
p = subprocess.run([DAEMON, "-c", cfg73_path], capture_output=True, text=True, timeout=30)
check(p.returncode == 73, "a state_dir that cannot be created exits 73 (got %d)" % p.returncode)

# start with a notify socket
ns = NotifySocket(tmp)
d = Daemon(cfg_path, env={"NOTIFY_SOCKET": ns.path, "WATCHDOG_USEC": "2000000"}).start()
check(wait_for(lambda: "msg=ready" in read(log_path)), "daemon logs ready")
check(wait_for(lambda: ns.seen("READY=1")), "READY=1 arrives on NOTIFY_SOCKET")
check(wait_for(lambda: ns.seen("WATCHDOG=1")), "WATCHDOG=1 arrives when WATCHDOG_USEC is set")
check(wait_for(lambda: ns.seen("STATUS=")), "STATUS= arrives")
st = wait_for(lambda: read_json(status_path))
# nothing answers at the services' URLs: the start-up check makes it "degraded"
check(st is not None and st.get("state") in ("running", "degraded"),
      "status.json written, state running (or degraded: the services do not answer)")
check(st is not None and st.get("pid") == d.proc.pid, "status.json carries the pid")
check(st is not None and st["flows"][0]["name"] == "pd-gain", "status.json lists the flow")
check(st is not None and "queue" in st and "api_calls" in st, "status.json has queue and api_calls")
check(os.stat(os.path.join(tmp, "state")).st_mode & 0o777 == 0o700, "state dir created 0700")
check(os.path.exists(os.path.join(tmp, "state", "data.mdb")), "LMDB data file exists")
log = read(log_path)
check(" level=info " in log and log.startswith("ts="), "log lines are logfmt with ts= and level=")
check("+08:00" in log.splitlines()[0], "log ts carries the configured offset")
check("test-secret" not in log and "test-client-secret" not in log, "no secret in the log")
check("test-secret" not in read(status_path), "no secret in the status file")

# SIGHUP with a valid change
cfg["kingdee"]["concurrency"] = 3
cfg["status"]["interval"] = "2s"
write_config(cfg_path, cfg)
d.signal(signal.SIGHUP)
check(wait_for(lambda: "configuration reloaded" in read(log_path)), "valid reload is logged")
log = read(log_path)
check('key=kingdee.concurrency old=8 new=3' in log, "the applied change is logged with old and new")
check(ns.seen("RELOADING=1"), "RELOADING=1 arrives on reload")
check(d.alive(), "daemon alive after reload")

# SIGHUP with a broken file
with open(cfg_path, "w") as f:
    f.write('{\n  "state_dir": "%s",\n  "flows": [ {"name": 1} ]\n' % tmp)
d.signal(signal.SIGHUP)
check(wait_for(lambda: "configuration refused" in read(log_path)), "broken reload is refused")
log = read(log_path)
check("wdt2jdy.json:" in log, "the error names the config file")
check(d.alive(), "daemon keeps running after a broken reload")
st = wait_for(lambda: (read_json(status_path) or {}).get("last_reload_error") and read_json(status_path))
check(st and st.get("reload_failures") == 1, "status shows the failed reload")

# secrets in a changed key are not logged
cfg["wdt"]["app_secret"] = "another-secret-value"
write_config(cfg_path, cfg)
d.signal(signal.SIGHUP)
check(wait_for(lambda: read(log_path).count("configuration reloaded") >= 2), "second valid reload")
log = read(log_path)
check("key=wdt.app_secret" in log and "another-secret-value" not in log,
      "a changed secret is named but its value is not logged")

# log rotation: move the file away, SIGHUP → new file
rotated = log_path + ".1"
shutil.move(log_path, rotated)
d.signal(signal.SIGHUP)
check(wait_for(lambda: os.path.exists(log_path) and "reloading configuration" in read(log_path)),
      "after the log is moved away, SIGHUP opens a new log file")
check("msg=ready" in read(rotated), "the rotated file keeps the earlier lines")

# SIGTERM → exit 0
rc = d.stop()
check(rc == 0, "SIGTERM exits 0 (got %s)" % rc)
check("msg=stopped" in read(log_path), "stop is logged")
check(ns.seen("STOPPING=1"), "STOPPING=1 arrives on NOTIFY_SOCKET")
st = read_json(status_path)
check(st is not None and st.get("state") == "stopping", "final status written on stop")

# restart on the same state works (schema check passes)
before = read(log_path).count("msg=ready")
d = Daemon(cfg_path).start()
check(wait_for(lambda: read(log_path).count("msg=ready") > before), "restart on the same state")
check(d.stop() == 0, "second SIGTERM exits 0")

shutil.rmtree(tmp, ignore_errors=True)
finish()
