"""wdt.ca_file and kingdee.ca_file, end to end over TLS.

Both fakes sit behind TLS proxies whose certificate is signed by CA 1.
1. The daemon starts with CA 2 as wdt.ca_file: every WDT query fails certificate
   verification. The configuration is changed to CA 1 and reloaded (SIGHUP): the same running
   daemon now reads WDT.
2. kingdee.ca_file names a file holding CA 2: the Kingdee login fails verification and
   nothing is posted. The file's content is replaced by CA 1 (a renewed CA bundle, same path):
   the next connection reads it anew (no cached copy) and every order is posted, once.
Needs the openssl command to make the certificates (exit 77 without it)."""

import os
import shutil
import signal
import subprocess
import sys

from wjtest import check, finish, read, wait_for
from e2e import close_stack, compare_bills, e2e_stack, log_tail, wait_settled
from hostile import Proxy

OPENSSL = shutil.which("openssl")
if not OPENSSL:
    print("openssl not found: skipped")
    sys.exit(77)


def openssl(*args):
    subprocess.run([OPENSSL] + list(args), check=True, capture_output=True, timeout=60)


def make_ca(d, name):
    key, pem = os.path.join(d, name + ".key"), os.path.join(d, name + ".pem")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", key, "-out", pem, "-days", "2", "-subj", "/CN=wdt2jdy test " + name)
    return key, pem


def make_server_cert(d, ca_key, ca_pem):
    key, csr, pem = (os.path.join(d, "server" + x) for x in (".key", ".csr", ".pem"))
    ext = os.path.join(d, "server.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    openssl("x509", "-req", "-in", csr, "-CA", ca_pem, "-CAkey", ca_key, "-CAcreateserial",
            "-out", pem, "-days", "2", "-extfile", ext)
    return pem, key


st = e2e_stack(20, span_days=2, seed=1919)
proxies = []
try:
    d = os.path.join(st.tmp, "pki")
    os.makedirs(d)
    ca1_key, ca1 = make_ca(d, "ca1")
    _, ca2 = make_ca(d, "ca2")
    cert = make_server_cert(d, ca1_key, ca1)
    wp = Proxy(st.wdt.url, tls=cert)
    jp = Proxy(st.jdy.url, tls=cert)
    proxies = [wp, jp]
    bundle = os.path.join(st.tmp, "kingdee-ca.pem")  # its content is renewed below
    shutil.copy(ca2, bundle)
    st.cfg["wdt"]["url"] = wp.url + "/router/qm"
    st.cfg["kingdee"]["url"] = jp.url
    st.cfg["wdt"]["ca_file"] = ca2
    st.cfg["kingdee"]["ca_file"] = bundle
    st.write()
    elig = st.eligible()
    st.start()

    def refused(mod):
        return [l for l in read(st.log).splitlines()
                if "mod=" + mod in l and "certificate" in l.lower()]
    check(wait_for(lambda: refused("poller"), timeout=30),
          "with CA 2, the WDT certificate is refused (%s)" % (refused("poller") or ["-"])[0][-120:])
    check(not wp.seen(lambda r: r.path == "/router/qm"), "no query got through")

    st.cfg["wdt"]["ca_file"] = ca1
    st.write()
    st.daemon.signal(signal.SIGHUP)
    check(wait_for(lambda: "configuration reloaded" in read(st.log), timeout=20), "reloaded")
    check("key=wdt.ca_file" in read(st.log), "the reload logs the changed wdt.ca_file")
    check(wait_for(lambda: wp.seen(lambda r: r.path == "/router/qm" and r.status == 200),
                   timeout=30), "after the reload with CA 1, the running daemon reads WDT")

    jdy_refused = wait_for(lambda: [l for l in read(st.log).splitlines()
                                    if "certificate" in l.lower() and "mod=poller" not in l],
                           timeout=60)
    check(jdy_refused, "with CA 2 in kingdee.ca_file, the Kingdee certificate is refused (%s)"
          % (jdy_refused or ["-"])[0][-120:])
    check(not st.bills(), "nothing posted")
    shutil.copy(ca1, bundle + ".new")
    os.rename(bundle + ".new", bundle)
    took, nb, nd = wait_settled(st, len(elig), timeout=90)
    check(took is not None and nb == len(elig) and nd == 0,
          "kingdee.ca_file renewed in place: every order posted (%d bills, %d dead)" % (nb, nd))
    if took is None:
        print(log_tail(st))
    missing, dups, extra, _ = compare_bills(st.bills(), elig, "v1")
    check(not missing and not dups and not extra, "exactly one bill per order")
    check(st.daemon.stop() == 0, "daemon exits 0")
finally:
    close_stack(st)
    for p in proxies:
        p.close()
finish()
