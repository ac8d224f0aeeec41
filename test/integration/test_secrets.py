"""Secrets and remote text, end to end.

A hostile proxy in front of the fake Kingdee answers saves with errors that echo the app-token
it saw in the request header and the client secret, and carry terminal escapes (colours, a
title-setting OSC, a C1 CSI, a bidirectional override); one save is refused for good (a dead
letter), one fails transiently (first_error/last_error in the order's record). A proxy in
front of the fake WDT answers once with an error (a transient one) that echoes the WDT app
secret. Then:
- the token and the secrets appear in none of: the log, status.json, the metrics file,
  `wdt2jdyctl status` (text and --json), `dlq list`, `dlq show`, and the stored records (dumped
  with mdb_dump when available: masked when recorded, not only when printed);
- nothing wdt2jdyctl prints holds a control character or an escape, while the readable part
  of the remote text is still shown;
- status.json and the metrics file have mode 0640;
- the daemon is not dumpable (the files in /proc/PID are then owned by root although the daemon
  runs as another user: as root, the test runs that daemon as nobody)."""

import json
import os
import shutil
import subprocess

from wjtest import DAEMON, check, ctl, finish, read, wait_for
from e2e import close_stack, e2e_stack, wait_settled
from hostile import Proxy

SAVE = "/jdy/inv/inv_check_gain_bill_save"
CLIENT_SECRET = "test-client-secret"
WDT_SECRET = "test-secret"
NASTY = "\x1b[31mRED\x1b[0m\x07 \x1b]0;owned\x07 \u009b2J \u202eLIVE"
CONTROLS = ["\x1b", "\x07", "\u009b", "\u202e", "\x9b"]

tokens = set()
refused = []


def token_of(req):
    t = req.headers.get("app-token") or req.headers.get("App-Token") or ""
    if t:
        tokens.add(t)
    return t


def refuse_body(req):
    """A permanent refusal (a business error code) that quotes the token and the secret."""
    refused.append((req.json() or {}).get("remark", ""))
    return json.dumps({"errcode": 2000002999, "description": "参数错误: app-token %s, client "
                       "secret %s %s" % (token_of(req), CLIENT_SECRET, NASTY)})


def busy_body(req):
    """A transient failure (HTTP 503) that quotes the token."""
    return json.dumps({"errcode": 503, "description": "busy, retry (app-token=%s) %s"
                       % (token_of(req), NASTY)})


def leaks(text):
    """Which secrets text holds."""
    return sorted(s for s in tokens | {CLIENT_SECRET, WDT_SECRET} if s and s in text)


def controls(text):
    return [repr(c) for c in CONTROLS if c in text]


st = e2e_stack(30, span_days=2, seed=1616)
jp = Proxy(st.jdy.url)
wp = Proxy(st.wdt.url)
st.cfg["kingdee"]["url"] = jp.url
st.cfg["wdt"]["url"] = wp.url + "/router/qm"
st.cfg["status"]["metrics_file"] = os.path.join(st.tmp, "wdt2jdy.prom")
st.write()
jp.add(lambda r: r.path == SAVE, "status_before", times=1, status=200,
       headers=[("Content-Type", "application/json")], body=refuse_body)
jp.add(lambda r: r.path == SAVE, "status_before", times=1, status=503,
       headers=[("Content-Type", "application/json")], body=busy_body)
wp.add("/router/qm", "status_before", times=1, status=200,
       headers=[("Content-Type", "application/json")],
       body=json.dumps({"response": {"flag": "failure", "code": "isp.unknown-error",
                                     "message": "bad app_secret %s %s" % (WDT_SECRET, NASTY)}}))
try:
    elig = st.eligible()
    st.start()
    took, nb, nd = wait_settled(st, len(elig), timeout=120)
    check(took is not None and nd == 1 and nb == len(elig) - 1,
          "settled: %d bills, %d dead letter (the refused save)" % (nb, nd))
    check(len(tokens) >= 1 and all(len(t) >= 8 for t in tokens),
          "the proxy echoed the app-token it saw (%d tokens)" % len(tokens))
    check(len(refused) == 1 and refused[0].startswith("WDT:"), "one save refused for good")
    dead_no = refused[0][4:] if refused else "-"
    check(wait_for(lambda: "***" in (st.status().get("last_error") or ""), timeout=10),
          "status.json: last_error shows the refusal, masked")

    outputs = {
        "log": read(st.log),
        "status.json": read(st.status_path),
        "metrics": read(st.cfg["status"]["metrics_file"]),
        "ctl status": ctl(st.cfg_path, "status").stdout,
        "ctl status --json": ctl(st.cfg_path, "status", "--json").stdout,
        "ctl dlq list": ctl(st.cfg_path, "dlq", "list").stdout,
        "ctl dlq show": ctl(st.cfg_path, "dlq", "show", dead_no).stdout,
    }
    for what, text in outputs.items():
        check(text and not leaks(text), "%s: no token or secret (%s)" % (what, leaks(text) or "none"))
    for what in ("ctl status", "ctl status --json", "ctl dlq list", "ctl dlq show"):
        text = outputs[what]
        check(not controls(text), "%s: no control character or escape (%s)"
              % (what, controls(text) or "none"))
    check(dead_no in outputs["ctl dlq list"] and "RED" in outputs["ctl dlq list"] and
          "参数错误: app-token ***" in outputs["ctl dlq list"],
          "ctl dlq list: the reason is shown, readable, with the token masked")
    shown = json.loads(outputs["ctl dlq show"] or "{}")
    check("***" in shown.get("reason", "") and "RED" in shown.get("reason", ""),
          "ctl dlq show: the reason, masked and cleaned (%s)" % shown.get("reason", "")[:80])
    check("***" in outputs["ctl status"] and "last error" in outputs["ctl status"],
          "ctl status: the last error, masked")
    check("RED" in outputs["ctl status"], "ctl status: the readable part of the remote text")

    for path in (st.status_path, st.cfg["status"]["metrics_file"]):
        mode = os.stat(path).st_mode & 0o777
        check(mode == 0o640, "%s has mode 0640 (got %04o)" % (os.path.basename(path), mode))

    check(st.daemon.stop() == 0, "daemon exits 0")
    dump = shutil.which("mdb_dump")
    if dump:
        for db in ("dead", "docs"):
            p = subprocess.run([dump, "-p", "-s", db, st.cfg["state_dir"]], capture_output=True,
                               text=True, errors="replace", timeout=60)
            check(p.returncode == 0 and "_error" in p.stdout and not leaks(p.stdout),
                  "stored %s records: errors kept, no token or secret (%s)"
                  % (db, leaks(p.stdout) or "none"))
        p = subprocess.run([dump, "-p", "-s", "docs", st.cfg["state_dir"]], capture_output=True,
                           text=True, errors="replace", timeout=60)
        check("first_error" in p.stdout and "busy, retry (app-token=***)" in p.stdout,
              "the transient failure is recorded in the order's record, masked")
    else:
        print("# mdb_dump not found: stored records not dumped")
finally:
    close_stack(st)
    jp.close()
    wp.close()

# ---- not dumpable ------------------------------------------------------------------------
# The files in a non-dumpable process's /proc/PID belong to root. Run the daemon as another
# user than
# root so that the owner tells (as root: as nobody).
import tempfile  # noqa: E402

from wjtest import base_config, write_config  # noqa: E402

as_root = os.geteuid() == 0
run_uid, run_gid = (65534, 65534) if as_root else (os.getuid(), os.getgid())
tmp = tempfile.mkdtemp(prefix="wj-it-dump-")
try:
    cfg = base_config(tmp)
    path = os.path.join(tmp, "wdt2jdy.json")
    write_config(path, cfg)
    if as_root:
        for root, dirs, files in os.walk(tmp):
            for n in dirs + files:
                os.chown(os.path.join(root, n), run_uid, run_gid)
        os.chown(tmp, run_uid, run_gid)

    def drop():
        if as_root:
            os.setgroups([])
            os.setgid(run_gid)
            os.setuid(run_uid)

    d = subprocess.Popen([DAEMON, "-c", path], preexec_fn=drop, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        ready = wait_for(lambda: "msg=ready" in read(os.path.join(tmp, "wdt2jdy.log")),
                         timeout=30)
        check(ready, "a daemon runs as uid %d" % run_uid)
        owner = os.stat("/proc/%d/status" % d.pid).st_uid
        check(owner == 0 and run_uid != 0,
              "the daemon is not dumpable (/proc/PID/status owned by %d, the daemon runs as %d)"
              % (owner, run_uid))
    finally:
        d.terminate()
        check(d.wait(timeout=30) == 0, "that daemon exits 0")
finally:
    shutil.rmtree(tmp, ignore_errors=True)
finish()
