"""Cutover from another integrator: the bills it already made are never made again.

Scenarios (run one with `test_cutover.py NAME`):
  mark-posted     bills made by a QingEasy-like integrator (no remark; the stock-take number in
                  the lines' billno, as the seed's solution maps it) for ten orders; five are
                  imported with `wdt2jdyctl mark-posted` before the daemon ever ran, five after
                  it read them (Kingdee failing meanwhile, so none was posted); a file with a
                  bad line is refused naming file and line, and imports nothing → every order
                  has exactly one bill; an order the daemon posted itself and that a file then
                  names with another bill number is reported
  skip-existing   bills made by another integrator whose remark carries the stock-in number in
                  its own wording, dated up to two days off the order's date; a bill whose
                  remark names a longer number that starts with an order's number; flow option
                  skip_existing "search" → those orders are adopted, the other one is posted,
                  every order has exactly one bill
  crash-mark      the daemon dies while saves hang (proxy); every order is then marked as posted
                  → after the restart the orders it was posting stay recorded as posted (a
                  later change of them is reviewed), nothing is posted
  backfill        `cursor set` and `backfill` refuse a time later than now - lag, naming the
                  limit; a backfill over a period holding orders already posted and three the
                  daemon never saw (one of them invalid) ends with its counts: read, new (saved,
                  parked), already posted
"""

import os
import sys
import time

from wjtest import CTL, check, ctl, read, wait_for  # first: module path
from e2e import (bill_date, derived_order, e2e_stack, log_tail, material_of, run_scenarios,
                 STORES, wait_settled)
from hostile import Proxy
import wjfake


def premade(st, orders, remark=None, date_shift=0):
    """Bills made by another integrator for orders: the seed's V1 body (stock-take number in
    the lines' billno), remark(order) or none, dated date_shift days off the order's date.
    Returns {stockin_no: (id, bill_no)}."""
    bills = []
    for o in orders:
        d = bill_date(o)
        if date_shift:
            d = wjfake.wdt_time(wjfake.parse_wdt_time(d + " 12:00:00") + date_shift * 86400)[:10]
        lines = []
        for x in o["details_list"]:
            mat, unit = material_of(x["spec_no"])
            lines.append({"materialid_id": mat, "stockid_id": STORES[o["warehouse_no"]],
                          "qty": float(x["goods_count"]), "unit_id": unit,
                          "billno": o["src_order_no"]})
        b = {"billdate": d, "material_entity": lines}
        if remark:
            b["remark"] = remark(o)
        bills.append(b)
    made = st.jdy.admin_post("/admin/bills", {"bills": bills})["bills"]
    return {o["stockin_no"]: (m["id"], m["bill_no"]) for o, m in zip(orders, made)}


def bills_per_order(st, orders, made):
    """Orders with no bill and orders with more than one: the daemon's by marker, the other
    integrator's by what the test made."""
    ours = {}
    for b in st.bills():
        ours[b.get("remark")] = ours.get(b.get("remark"), 0) + 1
    counts = {o["stockin_no"]: ours.get("WDT:" + o["stockin_no"], 0) +
              (1 if o["stockin_no"] in made else 0) for o in orders}
    return (sorted(n for n, c in counts.items() if c == 0),
            sorted(n for n, c in counts.items() if c > 1))


def quiet(st):
    q = st.state().get("queue", {})
    return q.get("ready", 1) + q.get("delayed", 1) + q.get("in_flight", 1) == 0


def write(path, text):
    with open(path, "w", newline="") as f:
        f.write(text)


def mark_posted(holder):
    st = e2e_stack(30, span_days=3, seed=515)
    holder["stack"] = st
    elig = sorted(st.eligible(), key=lambda o: o["modified"])
    a, b = elig[:5], elig[5:10]
    made = premade(st, a + b)
    cfg = st.cfg_path
    marks_a = os.path.join(st.tmp, "posted-a.txt")
    # comments, blank lines, tabs, commas, spaces and CRLF; one without a bill number
    lines = ["# exported from the old integrator", ""]
    for i, o in enumerate(a):
        no, bill = o["stockin_no"], made[o["stockin_no"]][1]
        lines.append(["%s\t%s" % (no, bill), "%s,%s" % (no, bill), "  %s , %s " % (no, bill),
                      no, "%s\t%s" % (no, bill)][i])
    write(marks_a, "\r\n".join(lines) + "\r\n")
    p = ctl(cfg, "mark-posted", "pd-gain", marks_a)
    check(p.returncode == 0 and "5 stock-in numbers of pd-gain imported" in p.stdout
          and "0 already read" in p.stdout and "5 not read yet" in p.stdout,
          "mark-posted before the daemon ran: %r" % (p.stdout + p.stderr))
    p = ctl(cfg, "mark-posted", "nosuch", marks_a)
    check(p.returncode == 1 and "no flow named" in p.stderr, "mark-posted: unknown flow refused")

    # the daemon reads every order while Kingdee fails: nothing is posted
    st.jdy.admin_post("/admin/faults", {"fail_5xx": 100})
    st.start()
    check(wait_for(lambda: st.state().get("orders") == len(elig), timeout=60, step=0.3),
          "the daemon read every order (%s of %d)" % (st.state().get("orders"), len(elig)))
    check(len(st.bills()) == len(made), "nothing posted while Kingdee fails")

    marks_b = os.path.join(st.tmp, "posted-b.txt")
    bad = os.path.join(st.tmp, "bad.txt")
    write(bad, "".join("%s,%s\n" % (o["stockin_no"], made[o["stockin_no"]][1]) for o in b[:2])
          + "%s,%s,extra\n" % (b[2]["stockin_no"], made[b[2]["stockin_no"]][1]))
    p = ctl(cfg, "mark-posted", "pd-gain", bad)
    check(p.returncode == 1 and ("%s:3:" % bad) in p.stderr and not p.stdout,
          "a bad line is refused naming file and line: %r" % p.stderr)
    write(bad, "%s has spaces,PY-1\n" % b[0]["stockin_no"])
    p = ctl(cfg, "mark-posted", "pd-gain", bad)
    check(p.returncode == 1 and ("%s:1:" % bad) in p.stderr, "a number with a space is refused: %r"
          % p.stderr)
    write(marks_b, "".join("%s,%s\n" % (o["stockin_no"], made[o["stockin_no"]][1]) for o in b))
    p = ctl(cfg, "mark-posted", "pd-gain", marks_b)
    check(p.returncode == 0 and "5 already read by the daemon" in p.stdout
          and "0 already posted" in p.stdout,
          "mark-posted after the daemon read them (the refused files imported nothing): %r"
          % p.stdout)

    st.jdy.admin_post("/admin/faults", {"fail_5xx": 0})
    ok = wait_for(lambda: quiet(st) and len(st.bills()) >= len(elig), timeout=90, step=0.5)
    missing, dups = bills_per_order(st, elig, made)
    check(ok and not missing and not dups and len(st.bills()) == len(elig),
          "every order has exactly one bill: %d bills for %d orders, missing %s, doubled %s"
          % (len(st.bills()), len(elig), missing[:3], dups[:3]))
    s = st.state()
    check(s.get("dead") == 0 and s.get("review") == 0, "no dead letter, nothing to review")
    check(read(st.log).count("marked as posted by wdt2jdyctl mark-posted") == len(a),
          "the daemon logs each order it found marked")

    # an order the daemon posted itself, named with another bill number
    c = elig[-1]
    write(marks_b, "%s,PY-OTHER-1\n" % c["stockin_no"])
    p = ctl(cfg, "mark-posted", "pd-gain", marks_b)
    check(p.returncode == 0 and "1 already posted by the daemon" in p.stdout and
          "warning: %s was posted by the daemon" % c["stockin_no"] in p.stdout
          and "PY-OTHER-1" in p.stdout, "an order posted by the daemon too is reported: %r"
          % p.stdout)
    check(len(st.bills()) == len(elig), "still one bill per order")


def skip_existing(holder):
    st = e2e_stack(30, span_days=3, seed=616, flows__0__skip_existing="search")
    holder["stack"] = st
    elig = sorted(st.eligible(), key=lambda o: o["modified"])
    words = [lambda o: "轻易云集成平台同步 入库单号:%s" % o["stockin_no"],
             lambda o: "盘盈入库 %s（旺店通）" % o["stockin_no"]]
    made = premade(st, elig[0:8:2], remark=words[0])
    made.update(premade(st, elig[1:8:2], remark=words[1], date_shift=2))
    x = elig[8]
    premade(st, [x], remark=lambda o: "入库单号:%s9" % o["stockin_no"])  # another number
    st.start()
    ok = wait_for(lambda: quiet(st) and st.state().get("orders") == len(elig) and
                  len(st.bills()) >= len(elig) + 1, timeout=90, step=0.5)
    missing, dups = bills_per_order(st, elig, made)
    check(ok and not missing and not dups and len(st.bills()) == len(elig) + 1,
          "every order has exactly one bill: %d bills (one more not an order's), missing %s, "
          "doubled %s" % (len(st.bills()), missing[:3], dups[:3]))
    remarks = [b.get("remark") for b in st.bills()]
    check("WDT:" + x["stockin_no"] in remarks,
          "a bill naming a longer number is not the order's: the order is posted")
    log = read(st.log)
    check(log.count("made by someone else found in Kingdee (skip_existing)") == len(made),
          "the daemon logs each bill it adopted (%d)" % len(made))
    calls = st.jdy_stats()["calls"]
    check(calls.get("list_bills", 0) >= len(elig),
          "it costs list calls: at least one per order (%s)" % calls.get("list_bills"))
    s = st.state()
    check(s.get("dead") == 0 and s.get("review") == 0, "no dead letter, nothing to review")


def crash_mark(holder):
    st = e2e_stack(12, span_days=2, seed=919)
    holder["stack"] = st
    elig = st.eligible()
    made = premade(st, elig)
    p = Proxy(st.jdy.url)
    st.proxy = p
    st.cfg["kingdee"]["url"] = p.url
    st.write()
    p.add("/jdy/inv/inv_check_gain_bill_save", "delay", seconds=900)  # saves hang
    st.start()
    check(wait_for(lambda: st.state().get("queue", {}).get("in_flight", 0) > 0, timeout=60,
                   step=0.2), "orders are being posted")
    st.daemon.kill()
    n_taken = st.state().get("queue", {}).get("in_flight", 0)
    marks = os.path.join(st.tmp, "posted.txt")
    write(marks, "".join("%s,%s\n" % (o["stockin_no"], made[o["stockin_no"]][1]) for o in elig))
    p = ctl(st.cfg_path, "mark-posted", "pd-gain", marks)
    check(p.returncode == 0 and "%d already read by the daemon" % len(elig) in p.stdout,
          "mark-posted with %d orders being posted: %r" % (n_taken, p.stdout + p.stderr))
    st.cfg["kingdee"]["url"] = st.jdy.url
    st.write()
    st.start()
    check(wait_for(lambda: "being posted when the daemon stopped, recorded as posted since"
                   in read(st.log), timeout=30, step=0.2), "the restart says so")
    for o in elig:  # what each bill holds changes in WDT: each is reviewed, none posted
        c = dict(o, modified=wjfake.wdt_time(time.time()))
        c["details_list"] = [dict(x, goods_count="77.0000") for x in o["details_list"]]
        st.wdt.admin_post("/admin/orders", c)
    ok = wait_for(lambda: st.state().get("review") == len(elig), timeout=60, step=0.3)
    s = st.state()
    check(ok and quiet(st), "every order recorded as posted is reviewed (%s of %d), none queued"
          % (s.get("review"), len(elig)))
    check(len(st.bills()) == len(made), "no bill posted (%d)" % len(st.bills()))


def backfill(holder):
    st = e2e_stack(20, span_days=2, seed=717)
    holder["stack"] = st
    cfg = st.cfg_path
    elig = st.eligible()
    st.start()
    took, nb, nd = wait_settled(st, len(elig), timeout=90)
    check(took is not None and nd == 0, "run settled: %d bills" % nb)
    ahead = wjfake.wdt_time(time.time() + 3600)
    p = ctl(cfg, "cursor", "set", "pd-gain", ahead)
    check(p.returncode == 1 and "later than now - lag" in p.stderr and "at most 20" in p.stderr,
          "cursor set refuses a time after now - lag, naming the limit: %r" % p.stderr)
    p = ctl(cfg, "backfill", "pd-gain", "--from", st.start_arg, "--to", ahead, "--no-wait")
    check(p.returncode == 1 and "later than now - lag" in p.stderr and "at most 20" in p.stderr,
          "backfill refuses an end after now - lag, naming the limit: %r" % p.stderr)

    # three orders behind the cursor that the daemon never saw, one of them invalid
    t0 = wjfake.parse_wdt_time(st.start_arg) + 3600
    extra = [derived_order(elig[0], 1 + i, wjfake.wdt_time(t0 + 60 * i)) for i in range(3)]
    extra[2]["details_list"][0]["goods_count"] = "0.0000"
    st.wdt.admin_post("/admin/orders", {"orders": extra})
    p = ctl(cfg, "backfill", "pd-gain", "--from", st.start_arg, "--to",
            wjfake.wdt_time(time.time() - 120))
    n = len(elig) + 3
    check(p.returncode == 0 and ("read %d orders: 3 new, %d already posted, 0 parked" %
                                 (n, len(elig))) in p.stdout,
          "backfill says what it read: %r" % p.stdout[-400:])
    check(("done: read %d, new 3 (2 saved, 0 adopted, 1 parked), already posted %d, parked 0"
           % (n, len(elig))) in p.stdout, "backfill ends with what became of the new orders")
    check(len(st.bills()) == nb + 2 and st.state().get("dead") == 1,
          "two new bills, one dead letter")


SCENARIOS = {"mark-posted": mark_posted, "skip-existing": skip_existing,
             "crash-mark": crash_mark, "backfill": backfill}

if __name__ == "__main__":
    run_scenarios(SCENARIOS, sys.argv[1:])
