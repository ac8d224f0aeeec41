"""The daemon as a process: start, log and status files, SIGHUP reload (valid, broken, log
rotation), sd_notify messages, SIGTERM exit, --check and exit codes. The status and metrics
tell the truth after the end: state stopped and wdt2jdy_up 0 after SIGTERM (and after a
failed start); after kill -9 the time of the last update stops, so the file shows stale."""

import json
import os
import re
import shutil
import signal
import subprocess
import time

from wjtest import (CTL, DAEMON, SOURCE, Daemon, NotifySocket, base_config, check, finish, read,
                    read_json, read_metrics, tempdir, wait_for, write_config)

tmp = tempdir()
cfg_path = os.path.join(tmp, "wdt2jdy.json")
log_path = os.path.join(tmp, "wdt2jdy.log")
status_path = os.path.join(tmp, "status.json")
prom_path = os.path.join(tmp, "wdt2jdy.prom")
cfg = base_config(tmp)
cfg["status"]["metrics_file"] = prom_path
write_config(cfg_path, cfg, comment="integration test config")


def metrics():
    return read_metrics(prom_path)


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
# a failed start leaves a status that says stopped, and why
cfg73["status"] = {"file": os.path.join(tmp, "73.status.json"),
                   "metrics_file": os.path.join(tmp, "73.prom")}
write_config(cfg73_path, cfg73)
p = subprocess.run([DAEMON, "-c", cfg73_path], capture_output=True, text=True, timeout=30)
st = read_json(os.path.join(tmp, "73.status.json")) or {}
check(p.returncode == 73 and st.get("state") == "stopped" and
      "cannot open state" in (st.get("last_error") or ""),
      "a failed start writes state stopped with the reason (%s)" % st.get("last_error"))
check(re.search(r"^wdt2jdy_up\{[^}]*\} 0$", read(os.path.join(tmp, "73.prom")), re.M),
      "a failed start writes wdt2jdy_up 0")

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
check(wait_for(lambda: metrics().get("wdt2jdy_up") == 1), "metrics: wdt2jdy_up 1 while running")
m = metrics()
check(abs(m.get("wdt2jdy_status_updated_seconds", 0) - time.time()) < 60,
      "metrics: wdt2jdy_status_updated_seconds is the time of the write")
check('state_dir="%s"' % cfg["state_dir"] in read(prom_path),
      "metrics: every series names its state_dir")
# the example alert rules use only metrics the daemon writes
with open(os.path.join(SOURCE, "etc", "prometheus-wdt2jdy.rules.yml")) as f:
    rules_text = f.read()
try:
    import yaml
    rules = [r for g in yaml.safe_load(rules_text)["groups"] for r in g["rules"]]
    check(len(rules) >= 5 and all(r.get("alert") and r.get("expr") for r in rules),
          "etc/prometheus-wdt2jdy.rules.yml is YAML with %d alerts" % len(rules))
except ImportError:
    print("# python3-yaml missing: the rules file is not parsed")
used = set(re.findall(r"\bwdt2jdy_[a-z_]+", rules_text))
written = set(re.findall(r"^(wdt2jdy_[a-z_]+)\{", read(prom_path), re.M))
check(used and used <= written, "every metric the alert rules use is written (missing: %s)" %
      sorted(used - written))
first = m.get("wdt2jdy_status_updated_seconds", 0)
check(wait_for(lambda: metrics().get("wdt2jdy_status_updated_seconds", 0) > first, timeout=10),
      "metrics: the update time moves while the daemon runs")
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
# the notification is read by another thread: wait for it rather than race it
check(wait_for(lambda: ns.seen("RELOADING=1"), timeout=10), "RELOADING=1 arrives on reload")
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
check(wait_for(lambda: ns.seen("STOPPING=1"), timeout=10), "STOPPING=1 arrives on NOTIFY_SOCKET")
st = read_json(status_path)
check(st is not None and st.get("state") == "stopped", "final status written on stop: state stopped")
check(metrics().get("wdt2jdy_up") == 0, "final metrics on stop: wdt2jdy_up 0")
p = subprocess.run([CTL, "-c", cfg_path, "status"], capture_output=True, text=True, timeout=60)
check(p.returncode == 0 and re.search(r"^daemon\s+stopped", p.stdout, re.M),
      "wdt2jdyctl status says stopped\n" + p.stdout)

# restart on the same state works (schema check passes)
before = read(log_path).count("msg=ready")
d = Daemon(cfg_path).start()
check(wait_for(lambda: read(log_path).count("msg=ready") > before), "restart on the same state")
check(d.stop() == 0, "second SIGTERM exits 0")

# kill -9: nothing is written at the end; the update time shows it
d = Daemon(cfg_path).start()
check(wait_for(lambda: (read_json(status_path) or {}).get("pid") == d.proc.pid and
               metrics().get("wdt2jdy_up") == 1), "third start: running again")
d.kill()
dead = metrics()
check(dead.get("wdt2jdy_up") == 1, "after kill -9 the metrics still say up 1 ...")
# status.interval is 1s in the test config (2s after the reload above)
check(wait_for(lambda: time.time() - metrics().get("wdt2jdy_status_updated_seconds", 0) > 10,
               timeout=30, step=0.5),
      "... but wdt2jdy_status_updated_seconds stops: the file is stale, detectably")
check(metrics().get("wdt2jdy_status_updated_seconds") ==
      dead.get("wdt2jdy_status_updated_seconds"), "the update time stayed where it was")
st = read_json(status_path) or {}
check(st.get("state") in ("running", "degraded") and st.get("updated") ==
      int(dead.get("wdt2jdy_status_updated_seconds", -1)),
      "status.json keeps its last update time too (updated %s)" % st.get("updated"))
p = subprocess.run([CTL, "-c", cfg_path, "status"], capture_output=True, text=True, timeout=60)
check(re.search(r"^daemon\s+not running", p.stdout, re.M) and "stale" in p.stdout,
      "wdt2jdyctl status says not running, status stale\n" + p.stdout)

shutil.rmtree(tmp, ignore_errors=True)
finish()
