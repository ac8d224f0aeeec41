"""Start the fake Kingdee gateway (fake_jdy) and talk to it like the real one.

Python 3 standard library only. Typical use:

    from wjfake_jdy import FakeJdy
    with FakeJdy(binary, ["--token-ttl", "2"]) as f:
        c = f.client()
        token = c.login()
        status, hdrs, body = c.call("GET", "/jdy/v2/bd/material_detail", [("number", "SP00001")])
"""

import base64
import hashlib
import hmac
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

DEFAULT_CLIENT_ID = "test-client"
DEFAULT_CLIENT_SECRET = "test-client-secret"
DEFAULT_APP_KEY = "test-app-key"
DEFAULT_OUTER_ID = "test-instance"

PATH_AUTHORIZE = "/jdyconnector/app_management/push_app_authorize"
PATH_AUTH_TOKEN = "/jdyconnector/app_management/kingdee_auth_token"


PATH_V1_LOGIN = "/auth/user/access_token"
PATH_V1_ACCOUNTS = "/jdy/sys/accountGroup"
DEFAULT_USERNAME = "test-user"
DEFAULT_PASSWORD = "test-password"
DEFAULT_ACCOUNT_ID = "1584244570835057173"


def encode(s):
    """RFC 3986 encoding: unreserved kept, everything else as uppercase %XX."""
    return urllib.parse.quote(s, safe="-_.~")


def encode_form(s):
    """Form encoding (the Java SDK's reading): A-Z a-z 0-9 - _ . * kept, space as '+'."""
    return urllib.parse.quote_plus(s, safe="-_.*").replace("~", "%7E")


def sign_string(method, path, query, nonce, timestamp, form=False):
    """The gateway string to sign; query is a list of (key, value) pairs (unencoded). Keys and
    values are encoded twice, the path once with a space as '+'. form=False: the RFC 3986
    reading, pairs sorted by key and value; form=True: form encoding, "k=v" strings sorted."""
    enc = encode_form if form else encode
    pairs = [(k, v, "%s=%s" % (enc(enc(k)), enc(enc(v)))) for k, v in query]
    pairs.sort(key=(lambda p: p[2]) if form else (lambda p: (p[0], p[1])))
    path_enc = encode_form(path) if form else encode(path).replace("%20", "+")
    return "%s\n%s\n%s\nx-api-nonce:%s\nx-api-timestamp:%s\n" % (
        method, path_enc, "&".join(p[2] for p in pairs), nonce, timestamp)


def hmac_b64hex(key, msg):
    """base64(lowercase hex(HMAC-SHA256(key, msg)))."""
    mac = hmac.new(key.encode(), msg.encode(), hashlib.sha256).hexdigest()
    return base64.b64encode(mac.encode()).decode()


def signature(secret, method, path, query, nonce, timestamp, form=False):
    return hmac_b64hex(secret, sign_string(method, path, query, nonce, timestamp, form))


def app_signature(app_key, app_secret):
    return hmac_b64hex(app_secret, app_key)


def gateway_headers(client_id, secret, method, path, query, nonce=None, timestamp=None,
                    form=False):
    """The X-Api-* headers of a signed call."""
    ts = str(int(time.time() * 1000)) if timestamp is None else str(timestamp)
    nonce = str(random.randrange(10**9, 10**10)) if nonce is None else str(nonce)
    return {
        "X-Api-ClientID": client_id,
        "X-Api-Auth-Version": "2.0",
        "X-Api-TimeStamp": ts,
        "X-Api-Nonce": nonce,
        "X-Api-SignHeaders": "X-Api-TimeStamp,X-Api-Nonce",
        "X-Api-Signature": signature(secret, method, path, query, nonce, ts, form),
    }


def http(method, url, headers=None, body=None, timeout=10):
    """One request; returns (status, headers dict, parsed JSON or raw text or None).
    Connection failures raise (urllib.error.URLError, ConnectionError, http.client errors)."""
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, hdrs, raw = r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        status, hdrs, raw = e.code, dict(e.headers), e.read()
    try:
        parsed = json.loads(raw.decode()) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return status, hdrs, parsed


class Client:
    """Signed calls against a fake (or any) gateway at base url."""

    def __init__(self, url, client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET,
                 app_key=DEFAULT_APP_KEY, outer_id=DEFAULT_OUTER_ID):
        self.url = url
        self.client_id = client_id
        self.client_secret = client_secret
        self.app_key = app_key
        self.outer_id = outer_id
        self.token = None
        self.domain = None
        self.app_secret = None

    def signed(self, method, path, query=(), body=None, extra=None, timestamp=None,
               secret=None, timeout=10, form=False):
        query = list(query)
        h = gateway_headers(self.client_id, secret or self.client_secret, method, path, query,
                            timestamp=timestamp, form=form)
        h.update(extra or {})
        qs = "&".join("%s=%s" % (encode(k), encode(v)) for k, v in query)
        return http(method, self.url + path + ("?" + qs if qs else ""), h, body, timeout)

    def authorize(self):
        st, _, b = self.signed("POST", PATH_AUTHORIZE, [("outerInstanceId", self.outer_id)],
                               body={})
        if st != 200 or b.get("errcode") != 0:
            raise RuntimeError("authorize failed: %s %s" % (st, b))
        self.app_secret = b["data"][0]["appSecret"]
        self.domain = b["data"][0]["domain"]
        return b["data"][0]

    def fetch_token(self, app_secret=None):
        sig = app_signature(self.app_key, app_secret or self.app_secret)
        return self.signed("GET", PATH_AUTH_TOKEN,
                           [("app_key", self.app_key), ("app_signature", sig)])

    def login(self):
        self.authorize()
        st, _, b = self.fetch_token()
        if st != 200 or b.get("errcode") != 0:
            raise RuntimeError("token failed: %s %s" % (st, b))
        self.token = b["data"]["app-token"]
        return self.token

    def call(self, method, path, query=(), body=None, token=None, router=None, timeout=10,
             form=False):
        extra = {"app-token": token or self.token or "", "X-GW-Router-Addr":
                 router or self.domain or ""}
        return self.signed(method, path, query, body, extra, timeout=timeout, form=form)


class V1Client:
    """The classic account login of the V1 API and its calls (no gateway signature)."""

    def __init__(self, url, client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET,
                 username=DEFAULT_USERNAME, password=DEFAULT_PASSWORD,
                 account_id=DEFAULT_ACCOUNT_ID):
        self.url = url
        self.creds = [("client_id", client_id), ("client_secret", client_secret),
                      ("username", username), ("password", password)]
        self.account_id = account_id
        self.token = None
        self.group = None

    def login_answer(self, post=False):
        """(status, headers, body) of the login, GET with a query or POST with a form."""
        form = urllib.parse.urlencode(self.creds)
        if not post:
            return http("GET", self.url + PATH_V1_LOGIN + "?" + form)
        req = urllib.request.Request(self.url + PATH_V1_LOGIN, data=form.encode(),
                                     method="POST", headers={
                                         "Content-Type": "application/x-www-form-urlencoded"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, dict(r.headers), json.loads(r.read().decode())
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, dict(e.headers), json.loads(raw.decode()) if raw else None

    def accounts(self, token=None):
        return http("POST", "%s%s?access_token=%s" % (self.url, PATH_V1_ACCOUNTS,
                                                       encode(token or self.token or "")))

    def login(self, post=False):
        st, _, b = self.login_answer(post)
        if st != 200 or b.get("errcode") != 0:
            raise RuntimeError("login failed: %s %s" % (st, b))
        self.token = b["data"]["access_token"]
        st, _, b = self.accounts()
        groups = [g for svc in b["data"] for g in svc["accountGroups"]
                  if g["accountId"] == self.account_id]
        if not groups:
            raise RuntimeError("account set %s not visible: %s" % (self.account_id, b))
        self.group = groups[0]["groupName"]
        return self.token

    def call(self, path, body=None, token=None, group=None, account_id=None):
        h = {"groupName": group or self.group or "", "accountId": account_id or self.account_id}
        return http("POST", "%s%s?access_token=%s" % (self.url, path,
                                                       encode(token or self.token or "")),
                    h, body if body is not None else {})


class FakeJdy:
    """A running fake_jdy process on a free loopback port."""

    def __init__(self, binary, args=(), start_timeout=10.0, verbose=False):
        self.tmp = tempfile.mkdtemp(prefix="fake_jdy.")
        pf = os.path.join(self.tmp, "port")
        cmd = [binary, "--port", "0", "--port-file", pf] + list(args)
        if verbose:
            cmd.append("--verbose")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stderr=None if verbose else subprocess.DEVNULL)
        deadline = time.monotonic() + start_timeout
        self.port = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with open(pf) as f:
                    txt = f.read()
                if txt.endswith("\n"):
                    self.port = int(txt)
                    break
            except FileNotFoundError:
                pass
            time.sleep(0.02)
        if self.port is None:
            self.stop()
            raise RuntimeError("fake_jdy did not start")
        self.url = "http://127.0.0.1:%d" % self.port

    def client(self, **kw):
        return Client(self.url, **kw)

    def v1_client(self, **kw):
        return V1Client(self.url, **kw)

    def admin_get(self, path):
        st, _, b = http("GET", self.url + path)
        if st != 200:
            raise RuntimeError("admin GET %s: %s %s" % (path, st, b))
        return b

    def admin_post(self, path, obj=None):
        st, _, b = http("POST", self.url + path, body=obj if obj is not None else {})
        if st != 200:
            raise RuntimeError("admin POST %s: %s %s" % (path, st, b))
        return b

    def stop(self, timeout=10.0):
        """Terminate (SIGTERM) and wait; returns the exit code."""
        rc = None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                rc = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait(timeout=timeout)
        else:
            rc = self.proc.returncode
        shutil.rmtree(self.tmp, ignore_errors=True)
        return rc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
