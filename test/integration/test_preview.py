"""`wdt2jdyctl preview FLOW --from T --to T --out FILE` against the fakes.

1. mixed: orders the daemon posted already, new valid ones, one with an unknown material and
   one with a zero quantity: each gets its line (posted already with its bill / post / park
   with the reason); FILE holds exactly the bodies the daemon then sends for the valid ones;
   nothing is posted (the fake Kingdee's bills and save calls stay as they were) and the
   state directory is unchanged;
2. no state yet (v2 API): every eligible order of a period longer than 30 days is listed,
   read in windows of at most 30 days and pages of page_size; the state directory is not
   created;
3. refusals: WDT refusing the signature, an unknown flow, times out of order: exit 1 with the
   reason; a bad configuration exits 78;
4. a refused Kingdee login, in either auth mode: exit 1 with Kingdee's text, credentials
   masked, no table of orders to post, nothing written."""

import hashlib
import json
import os
import sys
import time

from wjtest import check, ctl
from e2e import (derived_order, e2e_stack, expected_body, marker, run_scenarios,
                 wait_settled)
import wjfake


def table(out):
    """stockin_no → (date, lines, warehouse, store, action text) from the preview's table."""
    rows = {}
    for line in out.splitlines():
        parts = line.split(None, 6)
        if len(parts) == 7 and parts[4] == "→" and parts[2].isdigit():
            rows[parts[0]] = (parts[1], int(parts[2]), parts[3], parts[5], parts[6])
    return rows


def bodies(path):
    """stockin_no → body, from the --out file (one JSON object per line)."""
    out = {}
    with open(path) as f:
        for line in f:
            o = json.loads(line)
            out[o["stockin_no"]] = o["body"]
    return out


def snapshot(d):
    """What a directory holds: names, sizes and content hashes of its files."""
    if not os.path.isdir(d):
        return None
    out = {}
    for name in sorted(os.listdir(d)):
        p = os.path.join(d, name)
        with open(p, "rb") as f:
            out[name] = hashlib.sha256(f.read()).hexdigest() if name != "lock.mdb" else "lock"
    return out


def period(days):
    """From days ago to a minute ahead (orders stamped now are inside)."""
    now = int(time.time())
    return wjfake.wdt_time(now - days * 86400), wjfake.wdt_time(now + 60)


# ---- 1 --------------------------------------------------------------------------------------

def mixed(h):
    st = h["stack"] = e2e_stack(12, seed=7)
    posted = st.eligible()
    st.start()
    took, n, dead = wait_settled(st, len(posted), timeout=90)
    check(took is not None and n == len(posted), "mixed: the daemon posted %d orders" % n)
    check(st.daemon.stop() == 0, "mixed: the daemon stopped")
    bills_before = st.bills()
    saves_before = st.jdy_stats()["calls"]["save_v1"]

    mod = wjfake.wdt_time(int(time.time()))  # ahead of the daemon's cursor: it reads them next
    new = [derived_order(posted[0], i, mod) for i in range(1, 5)]
    new[2]["details_list"][0]["spec_no"] = "NOSUCH042"
    new[3]["details_list"][-1]["goods_count"] = "0.0000"
    st.wdt.admin_post("/admin/orders", new)
    state = snapshot(st.cfg["state_dir"])
    out_path = os.path.join(st.tmp, "bodies.jsonl")
    frm, to = period(8)
    p = ctl(st.cfg_path, "preview", "pd-gain", "--from", frm, "--to", to, "--out", out_path)
    check(p.returncode == 0, "mixed: exit 0 (%d %s)" % (p.returncode, p.stderr))
    rows = table(p.stdout)
    for o in posted:
        r = rows.get(o["stockin_no"])
        check(r and r[4].startswith("posted already: bill"),
              "mixed: %s posted already (%s)" % (o["stockin_no"], r and r[4]))
    for o in new[:2]:
        r = rows.get(o["stockin_no"])
        check(r and r[4] == "post" and r[1] == len(o["details_list"]) and r[2] == "WH0" +
              o["warehouse_no"][-1] and r[0] == o["stockin_time"][:10],
              "mixed: %s would be posted, with its date, lines and warehouse (%s)" % (
                  o["stockin_no"], r))
    r = rows.get(new[2]["stockin_no"])
    check(r and r[4].startswith("park: Kingdee material (spec_no) NOSUCH042"),
          "mixed: the unknown material would be parked, saying so (%s)" % (r and r[4]))
    r = rows.get(new[3]["stockin_no"])
    check(r and r[4].startswith("park: order %s: details_list[%d].goods_count: must be > 0" % (
        new[3]["stockin_no"], len(new[3]["details_list"]) - 1)),
        "mixed: the zero quantity would be parked, saying so (%s)" % (r and r[4]))
    check("4 to post" not in p.stdout and "2 to post, 2 to park, %d posted already" % len(posted)
          in p.stdout, "mixed: the summary counts each (%s)" % p.stdout.splitlines()[-2:])
    got = bodies(out_path)
    check(sorted(got) == sorted(o["stockin_no"] for o in new[:2]),
          "mixed: the file holds the bodies of the orders to post, and only those (%s)" %
          sorted(got))
    for o in new[:2]:
        check(got.get(o["stockin_no"]) == expected_body(o, "v1"),
              "mixed: %s's body is the mapping's" % o["stockin_no"])
    check(st.bills() == bills_before, "mixed: the fake Kingdee's bills are unchanged")
    check(st.jdy_stats()["calls"]["save_v1"] == saves_before, "mixed: no save call")
    check(snapshot(st.cfg["state_dir"]) == state, "mixed: the state directory is unchanged")

    # the daemon then sends exactly those bodies
    st.start()
    took, n, dead = wait_settled(st, len(posted) + 4, timeout=90)
    check(n == len(posted) + 2 and dead == 2, "mixed: the daemon posted 2 and parked 2 "
          "(%s bills, %s dead)" % (n, dead))
    sent = {b["remark"]: b["body"] for b in st.bills()}
    for o in new[:2]:
        check(sent.get(marker(o)) == got.get(o["stockin_no"]),
              "mixed: the daemon sent %s exactly as previewed" % o["stockin_no"])


# ---- 2 --------------------------------------------------------------------------------------

def no_state(h):
    start = wjfake.wdt_time(int(time.time()) - 75 * 86400)
    st = h["stack"] = e2e_stack(60, start=start, span_days=70, seed=11, kingdee_api="v2",
                                flows__0__cursor__page_size=7)
    frm, to = period(72)
    p = ctl(st.cfg_path, "preview", "pd-gain", "--from", frm, "--to", to)
    check(p.returncode == 0, "no state: exit 0 (%s)" % p.stderr)
    want = sorted(o["stockin_no"] for o in st.eligible() if frm <= o["modified"] <= to)
    rows = table(p.stdout)
    check(sorted(rows) == want and len(want) > 20,
          "no state: every eligible order of the 72 days is listed (%d of %d)" % (
              len(rows), len(want)))
    check(all(r[4] == "post" for r in rows.values()), "no state: each would be posted")
    # windows [from + 30 d * i, + 30 d - 1 s], each read until a page shorter than 7
    t0, t1 = wjfake.parse_wdt_time(frm), wjfake.parse_wdt_time(to)
    mods = [wjfake.parse_wdt_time(o["modified"]) for o in st.eligible()]
    span = 30 * 86400
    pages = sum(len([m for m in mods if w <= m <= min(w + span - 1, t1)]) // 7 + 1
                for w in range(t0, t1 + 1, span))
    stats = st.wdt.admin_get("/admin/stats")
    check(stats["bad_params"] == 0 and stats["calls"] == pages,
          "no state: 3 windows of at most 30 days, pages of 7, none refused (%d calls, %d "
          "expected)" % (stats["calls"], pages))
    check("no state in" in p.stdout, "no state: the preview says no state exists yet")
    check(not os.path.exists(st.cfg["state_dir"]), "no state: the state directory is not created")
    check(not st.bills() and st.jdy_stats()["calls"]["save_v2"] == 0, "no state: nothing posted")


# ---- 3 --------------------------------------------------------------------------------------

def refusals(h):
    st = h["stack"] = e2e_stack(5)
    frm, to = period(3)
    p = ctl(st.cfg_path, "preview", "nosuch", "--from", frm, "--to", to)
    check(p.returncode == 1 and "no flow named \"nosuch\"" in p.stderr, "an unknown flow: exit 1")
    p = ctl(st.cfg_path, "preview", "pd-gain", "--from", to, "--to", frm)
    check(p.returncode == 1 and "from not after to" in p.stderr, "times out of order: exit 1")
    p = ctl(st.cfg_path, "preview", "pd-gain", "--from", frm)
    check(p.returncode == 1, "a missing --to: exit 1")
    st.cfg["wdt"]["app_secret"] = "wrong-wdt-secret"
    st.write()
    p = ctl(st.cfg_path, "preview", "pd-gain", "--from", frm, "--to", to)
    check(p.returncode == 1 and "sign-check-failure" in p.stderr and
          "wrong-wdt-secret" not in p.stdout + p.stderr,
          "WDT refuses the signature: exit 1 with WDT's text (%s)" % p.stderr)
    st.cfg["flows"][0]["cursor"]["window"] = "nonsense"
    st.write()
    p = ctl(st.cfg_path, "preview", "pd-gain", "--from", frm, "--to", to)
    check(p.returncode == 78, "a bad configuration: exit 78")


# ---- 4 --------------------------------------------------------------------------------------

def login(h):
    st = h["stack"] = e2e_stack(5, jdy_args=["--echo-token-in-errors"])
    frm, to = period(8)
    out_path = os.path.join(st.tmp, "bodies.jsonl")
    secret = st.cfg["kingdee"]["client_secret"]
    st.cfg["kingdee"]["client_secret"] = "wrong-client-secret"
    st.write()
    p = ctl(st.cfg_path, "preview", "pd-gain", "--from", frm, "--to", to, "--out", out_path)
    check(p.returncode == 1 and "authorize:" in p.stderr and "signature" in p.stderr,
          "gateway login refused: exit 1 with the gateway's text (%s)" % p.stderr)
    check("wrong-client-secret" not in p.stdout + p.stderr, "gateway login refused: secret masked")
    check(not table(p.stdout), "gateway login refused: no order is shown as to post")

    k = st.cfg["kingdee"]
    k.pop("outer_instance_id", None)
    k.update(auth="password", username="test-user", password="wrong-password-1",
             client_secret=secret, account_id="1584244570835057173")
    st.write()
    p = ctl(st.cfg_path, "preview", "pd-gain", "--from", frm, "--to", to, "--out", out_path)
    check(p.returncode == 1 and "login: errcode" in p.stderr,
          "password login refused: exit 1 with Kingdee's text (%s)" % p.stderr)
    check("wrong-password-1" not in p.stdout + p.stderr and secret not in p.stdout + p.stderr
          and "***" in p.stderr,
          "password login refused: the password is masked")
    check(not os.path.exists(st.cfg["state_dir"]), "login refused: no state directory created")
    check(not st.bills(), "login refused: nothing posted")


run_scenarios({"mixed": mixed, "no_state": no_state, "refusals": refusals, "login": login},
              sys.argv[1:])
