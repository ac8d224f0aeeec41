"""Operator commands against a running daemon never get silently undone:

- `wdt2jdyctl cursor set` while a window is being read: the window's end must not overwrite
  the operator's cursor; the flow goes on from where the operator put it.
- `wdt2jdyctl backfill` while another backfill of the flow is under way is refused with a
  message that says what to do; `backfill --cancel` drops the running one; a `backfill` that
  waits for its job says so when its job was cancelled, instead of reporting "done"."""

import subprocess
import time

from e2e import close_stack, e2e_stack, wait_settled, wait_status
from wjtest import CTL, check, ctl, finish, read, wait_for
import wjfake


def window_lines(st):
    """(start, end) of every "window stored" line, in order."""
    out = []
    for line in read(st.log).splitlines():
        if "window stored" in line:
            out.append((line.split('window_start="')[1][:19], line.split('window_end="')[1][:19]))
    return out


def reading_after(st, start, at_least):
    """True while status.json shows a window that starts after start being read at page >=
    at_least (the status file may be a second old)."""
    w = (st.status().get("flows") or [{}])[0].get("window")
    return bool(w) and w.get("start", "") > start and w.get("page", 0) >= at_least


# Slow WDT while a window must be caught being read: every answer takes 500 ms, and a window
# of 1 day holds about 14 pages of 5 orders.
SLOW = {"latency_ms": 500}
FAST = {"latency_ms": 0}
st = e2e_stack(400, span_days=4, seed=91, wdt_args=["--latency-ms", "500"],
               flows__0__cursor__page_size=5)
st.cfg["log"]["level"] = "debug"  # windows that bring nothing new are logged at debug
st.write()
try:
    start = wjfake.parse_wdt_time(st.start_arg)
    st.start()
    # ---- cursor set while a window is read ----
    # let the first window finish, then move the cursor back while the second one is read
    # (each has about 14 pages of 500 ms: several seconds left after its page 1)
    check(wait_for(lambda: reading_after(st, st.start_arg, 1), timeout=60, step=0.1),
          "cursor: the second window is being read")
    target = start + 6 * 3600
    p = ctl(st.cfg_path, "cursor", "set", "pd-gain", wjfake.wdt_time(target), check_rc=0)
    n_before = len(window_lines(st))
    check(p.returncode == 0, "cursor: set to %s while that window was read"
          % wjfake.wdt_time(target))
    # the window in progress ends; the next one starts at the operator's cursor (less overlap)
    ok = wait_for(lambda: any(s <= wjfake.wdt_time(target)
                              for s, e in window_lines(st)[n_before:]), timeout=60, step=0.2)
    check(ok, "cursor: a window starting at the operator's cursor was read after it "
          "(windows after the set: %s)" % window_lines(st)[n_before:n_before + 3])
    check("the operator's cursor stands" in read(st.log),
          "cursor: the log says the operator's cursor stands")

    # ---- backfill while another one runs ----
    st.wdt.admin_post("/admin/faults", FAST)
    elig = st.eligible()
    last = max(wjfake.parse_wdt_time(o["modified"]) for o in elig)
    wait_for(lambda: (st.state().get("cursors", {}).get("pd-gain") or {}).get("cursor", 0) >= last,
             timeout=120, step=0.5)
    wait_settled(st, len(elig), timeout=60)
    st.wdt.admin_post("/admin/faults", SLOW)
    a, b = wjfake.wdt_time(start), wjfake.wdt_time(start + 3 * 86400)
    p = ctl(st.cfg_path, "backfill", "pd-gain", "--from", a, "--to", b, "--no-wait", check_rc=0)
    check(p.returncode == 0 and "queued" in p.stdout, "backfill: the first one is queued")
    wait_status(st, lambda s: (s.get("flows") or [{}])[0].get("backfill") is not None,
                timeout=30)
    c, d = wjfake.wdt_time(start + 86400), wjfake.wdt_time(start + 2 * 86400)
    p = ctl(st.cfg_path, "backfill", "pd-gain", "--from", c, "--to", d, "--no-wait")
    check(p.returncode == 1 and "already under way" in p.stderr and "--cancel" in p.stderr
          and a in p.stderr, "backfill: a second one is refused, saying what to do: %r"
          % (p.stdout + p.stderr))
    check(wait_for(lambda: "backfill finished" in read(st.log), timeout=120, step=0.5),
          "backfill: the first one reads its whole period")
    # once it finished, a new one is accepted; one that waits learns of its cancel
    waiter = subprocess.Popen([CTL, "-c", st.cfg_path, "backfill", "pd-gain", "--from", c,
                               "--to", b], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    check(wait_status(st, lambda s: ((s.get("flows") or [{}])[0].get("backfill") or {})
                      .get("from") == c, timeout=30).get("flows", [{}])[0].get("backfill"),
          "backfill: the next one runs")
    p = ctl(st.cfg_path, "backfill", "pd-gain", "--cancel", check_rc=0)
    check(p.returncode == 0 and "cancelled" in p.stdout, "backfill: --cancel drops it: %r"
          % p.stdout)
    out, err = waiter.communicate(timeout=60)
    check(waiter.returncode == 1 and "cancelled or replaced" in out and "done" not in out,
          "backfill: the waiting command says its job was cancelled: %r" % out[-200:])
    check(wait_status(st, lambda s: (s.get("flows") or [{}])[0].get("backfill") is None,
                      timeout=30).get("flows", [{}])[0].get("backfill") is None,
          "backfill: the daemon drops the cancelled job")
    p = ctl(st.cfg_path, "backfill", "pd-gain", "--from", a, "--to", d, "--no-wait", check_rc=0)
    check(p.returncode == 0, "backfill: a new one is accepted after the cancel")
    check(close_stack(st) == 0, "daemon exits 0")
finally:
    close_stack(st)

finish()
