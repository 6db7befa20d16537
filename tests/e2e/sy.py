"""sy: the end-to-end harness for switchyard (Python 3 standard library only).

`Switchyard` starts the real binary on a free 127.0.0.1 port with a fresh data directory (hence a fresh embedded
Kafka broker), captures its log, and stops it with SIGTERM on exit, checking the exit status and, like
Test::Nginx's `--- no_error_log`, that the log holds no `error` line the test did not expect. `run()` is the tiny
runner every tests/e2e/NN_*.py file ends with: it calls the file's `test_*` functions in order with the binary's
path. It deliberately has no fixtures, no retries of failed tests and no sleeps: tests wait for conditions with
`wait_for`, always bounded.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections import namedtuple

# the repository root: tests/e2e/sy.py -> ../..
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REFERENCE_ROUTES = os.path.join(ROOT, "routes.lua")

START_TIMEOUT = 15.0  # seconds until the port must answer
STOP_TIMEOUT = 15.0  # seconds after SIGTERM (the binary's default --shutdown-timeout is 10)
HTTP_TIMEOUT = 15.0  # seconds for one HTTP exchange

# `2026-11-22T04:27:13.963Z error module: message`
ERROR_LINE = re.compile(r"^\S+ error (\S+?): (.*)$")
# sanitizer reports (ASan build) never belong in a log
SANITIZER_LINE = re.compile(r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error: |SUMMARY: \w+Sanitizer")

Response = namedtuple("Response", "status headers body json")


class Failure(AssertionError):
    pass


def _tail(text, lines=40):
    return "\n".join(text.splitlines()[-lines:])


def free_port():
    """A port that was free a moment ago (the caller retries on the rare collision)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout, what, interval=0.05, on_timeout=None):
    """Calls predicate until it returns something truthy and returns that; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = predicate()
            if v:
                return v
            last_exc = None
        except Failure:
            raise
        except Exception as e:  # a predicate may fail while the condition is not there yet
            last_exc = e
        if time.monotonic() >= deadline:
            msg = "timed out after %.1f s waiting for %s" % (timeout, what)
            if last_exc is not None:
                msg += " (last error: %r)" % (last_exc,)
            if on_timeout is not None:
                msg += "\n" + on_timeout()
            raise Failure(msg)
        time.sleep(interval)


def _parse_json(headers, body):
    if "json" not in headers.get("content-type", "") or not body:
        return None
    try:
        return json.loads(body.decode("utf-8"))
    except ValueError:
        return None


def _response(resp):
    body = resp.read()
    headers = {}
    for k, v in resp.getheaders():
        k = k.lower()
        headers[k] = v if k not in headers else headers[k] + ", " + v
    return Response(resp.status, headers, body, _parse_json(headers, body))


_scratch_dirs = []


def scratch_dir(prefix="sy-e2e-"):
    """A temporary directory removed when the test file ends (kept when SY_KEEP=1)."""
    d = tempfile.mkdtemp(prefix=prefix)
    _scratch_dirs.append(d)
    return d


def write_routes(text, name="routes.lua", directory=None):
    """Writes a routes file into a scratch directory and returns its path."""
    directory = directory or scratch_dir("sy-routes-")
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(text)
    return path


LSAN_SUPPRESSIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lsan.supp")


def sanitizer_env():
    """The environment for the binary: ours, plus LeakSanitizer suppressions for libh2o's own leaks (lsan.supp;
    harmless in a build without sanitizers; SY_LSAN_SUPPRESSIONS=0 turns them off)."""
    env = dict(os.environ)
    if env.get("SY_LSAN_SUPPRESSIONS", "1") != "0" and "suppressions=" not in env.get("LSAN_OPTIONS", ""):
        opts = env.get("LSAN_OPTIONS", "")
        env["LSAN_OPTIONS"] = (opts + ":" if opts else "") + "suppressions=%s:print_suppressions=0" % LSAN_SUPPRESSIONS
    return env


def run_binary(bin, args, timeout=30):
    """Runs the binary to completion (for --check, --help, ...): returns (exit status, stdout, stderr)."""
    p = subprocess.run([bin] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                       cwd=ROOT, env=sanitizer_env())
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


class Switchyard:
    """A running switchyard. Use as a context manager:

        with Switchyard(bin, routes_path, ["--max-body", "1k"]) as s:
            r = s.request("GET", "/healthz")

    On exit it sends SIGTERM, waits (bounded) and checks the exit status (`expect_exit`, None to skip) and that the
    log holds no error line outside `allowed_errors` (regular expressions searched in the line's message).
    `data_dir` reuses a directory (restart tests); by default each instance gets a fresh one.
    """

    def __init__(self, bin, routes=None, extra_args=(), workers=2, data_dir=None, expect_exit=0,
                 allowed_errors=(), env=None):
        self.bin = os.path.abspath(bin)
        self.routes = routes or REFERENCE_ROUTES
        self.extra_args = list(extra_args)
        self.workers = workers
        self.workdir = scratch_dir("sy-run-")
        self.data_dir = data_dir or os.path.join(self.workdir, "data")
        self.log_path = os.path.join(self.workdir, "switchyard.log")
        self.expect_exit = expect_exit
        self.allowed_errors = list(allowed_errors)
        self.env = env
        self.proc = None
        self.port = None
        self.returncode = None

    # -- life cycle ------------------------------------------------------------------------------------------------

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            # keep the original failure; still stop the process, and show what it logged
            self._kill_quietly()
            sys.stderr.write("---- switchyard log (%s), last lines ----\n%s\n----\n" %
                             (self.log_path, _tail(self.log())))
            return False
        self.stop()
        return False

    def args(self):
        # the admin listener binds exclusively (default 127.0.0.1:9090): give each test process its own port
        if getattr(self, "admin_port", None) is None:
            self.admin_port = free_port()
        return [self.bin, "--listen", "127.0.0.1:%d" % self.port, "--admin", "127.0.0.1:%d" % self.admin_port,
                "--data-dir", self.data_dir, "--workers", str(self.workers)] + self.extra_args + [self.routes]

    def start(self, timeout=START_TIMEOUT):
        for attempt in range(3):
            self.port = free_port()
            logf = open(self.log_path, "ab")
            env = sanitizer_env()
            if self.env:
                env.update(self.env)
            self.proc = subprocess.Popen(self.args(), stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                         cwd=ROOT, env=env)
            logf.close()
            self.returncode = None
            if self._wait_ready(timeout):
                return self
            if not re.search(r"Address already in use", self.log()):
                break
        raise Failure("switchyard did not start (exit status %s); log tail:\n%s" %
                      (self.proc.returncode, _tail(self.log())))

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                return False
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/__sy_e2e_ready")
                conn.getresponse().read()
                conn.close()
                return True
            except (OSError, http.client.HTTPException):
                time.sleep(0.05)
        self._kill_quietly()
        raise Failure("switchyard did not answer on port %d within %.0f s; log tail:\n%s" %
                      (self.port, timeout, _tail(self.log())))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=STOP_TIMEOUT):
        """Waits for the process to end; returns its exit status (negative: killed by that signal)."""
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill_quietly()
            raise Failure("switchyard still running %.0f s after the signal; log tail:\n%s" %
                          (timeout, _tail(self.log())))
        return self.returncode

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT, check=True):
        """Sends `sig`, waits and (check=True) verifies the exit status and the log. Returns the exit status."""
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.wait_exit(timeout)
        if check:
            if self.expect_exit is not None and rc != self.expect_exit:
                raise Failure("switchyard exited with status %s (expected %s); log tail:\n%s" %
                              (rc, self.expect_exit, _tail(self.log())))
            self.assert_no_unexpected_errors(self.allowed_errors)
        return rc

    def _kill_quietly(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    # -- log -------------------------------------------------------------------------------------------------------

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_matches(self, pattern):
        """The log lines in which `pattern` (a regular expression) is found."""
        rx = re.compile(pattern)
        return [line for line in self.log().splitlines() if rx.search(line)]

    def assert_no_unexpected_errors(self, allowed_patterns=()):
        allowed = [re.compile(p) for p in allowed_patterns]
        bad = []
        for line in self.log().splitlines():
            if SANITIZER_LINE.search(line):
                bad.append(line)
                continue
            m = ERROR_LINE.match(line)
            if m and not any(a.search(line) for a in allowed):
                bad.append(line)
        if bad:
            raise Failure("unexpected error lines in the log:\n" + "\n".join(l[:600] for l in bad[:20]))

    def wait_for(self, predicate, timeout, what, interval=0.05):
        def check():
            if not self.alive():
                raise Failure("switchyard exited (status %s) while waiting for %s; log tail:\n%s" %
                              (self.proc.returncode, what, _tail(self.log())))
            return predicate()
        return wait_for(check, timeout, what, interval, on_timeout=lambda: "log tail:\n" + _tail(self.log()))

    def wait_for_log(self, pattern, timeout=30, count=1):
        """Waits until at least `count` log lines match `pattern`; returns them."""
        return self.wait_for(lambda: (lambda m: m if len(m) >= count else None)(self.log_matches(pattern)),
                             timeout, "%d log line(s) matching /%s/" % (count, pattern))

    # -- HTTP ------------------------------------------------------------------------------------------------------

    def connection(self, timeout=HTTP_TIMEOUT):
        """A keep-alive http.client connection to the server (the caller closes it)."""
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, raw=None, timeout=HTTP_TIMEOUT):
        """One exchange on a fresh connection. `body`: bytes/str sent as is, or a dict/list sent as JSON (with
        content-type application/json unless `headers` names one). `raw`: bytes written to the socket as the whole
        request instead. Returns Response(status, headers (lowercase names), body bytes, parsed JSON or None)."""
        if raw is not None:
            return self._raw(raw, timeout)
        headers = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            if not any(k.lower() == "content-type" for k in headers):
                headers["Content-Type"] = "application/json"
        if isinstance(body, str):
            body = body.encode("utf-8")
        conn = self.connection(timeout)
        try:
            try:
                conn.request(method, path, body=body, headers=headers)
            except (BrokenPipeError, ConnectionResetError):
                # the server may answer (413) and close before it has read a large body: read what it said
                pass
            return _response(conn.getresponse())
        finally:
            conn.close()

    def post_json(self, path, body, headers=None):
        """POST with content-type application/json; `body` is JSON text (str) or a value to encode."""
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        if not isinstance(body, (str, bytes)):
            body = json.dumps(body)
        return self.request("POST", path, body=body, headers=h)

    def _raw(self, raw, timeout):
        if isinstance(raw, str):
            raw = raw.encode("latin-1")
        method = raw.split(b" ", 1)[0].decode("ascii", "replace")
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(raw)
            resp = http.client.HTTPResponse(sock, method=method)
            resp.begin()
            return _response(resp)

    # -- Kafka -----------------------------------------------------------------------------------------------------

    def bootstrap(self):
        path = os.path.join(self.data_dir, "kafka.bootstrap")
        return self.wait_for(lambda: open(path).read().strip(), 10, "the kafka.bootstrap file")

    def kcat_dump(self, topic, timeout=20):
        """Every record of `topic` from the beginning: a list of (key, value, headers dict) in partition, offset
        order; key and value are str (None for null). Each element also carries partition and offset in the
        `records` attribute of the returned list."""
        cmd = ["kcat", "-b", self.bootstrap(), "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-J"]
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Failure("kcat on %s did not finish within %d s" % (topic, timeout))
        if p.returncode != 0:
            raise RuntimeError("kcat on %s failed (%d): %s" % (topic, p.returncode,
                                                                p.stderr.decode("utf-8", "replace").strip()))
        recs = []
        for line in p.stdout.decode("utf-8", "replace").splitlines():
            line = line.strip()
            if not line.startswith("{"):
                continue
            recs.append(json.loads(line))
        recs.sort(key=lambda r: (r.get("partition", 0), r.get("offset", 0)))
        out = KafkaRecords()
        for r in recs:
            hs = r.get("headers") or {}
            if isinstance(hs, list):  # kcat -J: ["name", "value", ...]
                hs = {hs[i]: hs[i + 1] for i in range(0, len(hs) - 1, 2)}
            out.append((r.get("key"), r.get("payload"), hs))
            out.records.append(r)
        return out


class KafkaRecords(list):
    def __init__(self):
        super().__init__()
        self.records = []  # kcat's JSON objects (topic, partition, offset, key, payload, headers)


# -- servers shared by several tests ---------------------------------------------------------------------------------

_shared = {}


def shared(name, make):
    """A server shared by the tests of a file that only read from it (each start and stop costs about a second, more
    under ASan): `make()` returns a Switchyard, started on first use. The runner stops every shared server after
    the last test and checks its exit status and log like a `with` block does; a shared server that died fails the
    test asking for it."""
    s = _shared.get(name)
    if s is None:
        s = make().start()
        _shared[name] = s
    elif not s.alive():
        raise Failure("shared server %r exited (status %s); log tail:\n%s" % (name, s.proc.returncode, _tail(s.log())))
    return s


def _stop_shared():
    """Stops the shared servers; returns [(name, reason)] for those whose stop or log check failed."""
    failures = []
    for name, s in list(_shared.items()):
        try:
            s.stop()
        except Exception as e:
            failures.append((name, str(e) or type(e).__name__))
        finally:
            s._kill_quietly()
    _shared.clear()
    return failures


# -- assertions ----------------------------------------------------------------------------------------------------

def check(cond, msg):
    if not cond:
        raise Failure(msg)


def eq(actual, expected, what="value"):
    if actual != expected:
        raise Failure("%s: expected %r, got %r" % (what, expected, actual))


def assert_json_error(r, status, message=None):
    """An error response of switchyard: that status, content-type application/json, and a NestJS-shaped body
    {"statusCode": status, "message": ..., "error": ...}. `message`: a substring the message (or one of the
    messages) must contain. Returns the parsed body."""
    check(r.status == status, "expected status %d, got %d: %r" % (status, r.status, r.body[:300]))
    ct = r.headers.get("content-type", "")
    check(ct.split(";")[0].strip() == "application/json",
          "status %d: content-type is %r, not application/json (body %r)" % (status, ct, r.body[:200]))
    check(isinstance(r.json, dict), "status %d: the body is not a JSON object: %r" % (status, r.body[:300]))
    eq(r.json.get("statusCode"), status, "statusCode")
    check("message" in r.json and "error" in r.json, "error body lacks message or error: %r" % (r.json,))
    if message is not None:
        msgs = r.json["message"] if isinstance(r.json["message"], list) else [r.json["message"]]
        check(any(message in str(m) for m in msgs), "no message contains %r: %r" % (message, r.json["message"]))
    return r.json


# -- runner --------------------------------------------------------------------------------------------------------

def run(namespace):
    """Runs the test_* functions of `namespace` (a test file's globals()) in definition order, each called with the
    binary's path. Prints `ok name` or `FAIL name: reason`; exits 1 when any failed."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "switchyard"), help="the switchyard binary")
    ap.add_argument("-k", dest="only", action="append", default=[], help="run only tests whose name contains this")
    opts = ap.parse_args()
    bin = os.path.abspath(opts.bin)
    if not os.access(bin, os.X_OK):
        print("FAIL setup: %s is not an executable" % bin)
        sys.exit(1)
    tests = [(n, f) for n, f in namespace.items() if n.startswith("test_") and callable(f)]
    if opts.only:
        tests = [(n, f) for n, f in tests if any(o in n for o in opts.only)]
    failed = []
    started = time.monotonic()
    for name, fn in tests:
        t0 = time.monotonic()
        try:
            fn(bin)
        except Exception as e:
            failed.append(name)
            reason = str(e) or type(e).__name__
            if not isinstance(e, AssertionError):
                reason = "%s: %s" % (type(e).__name__, reason)
            print("FAIL %s: %s" % (name, reason), flush=True)
            if not isinstance(e, Failure):
                traceback.print_exc(file=sys.stdout)
        else:
            print("ok   %s (%.1f s)" % (name, time.monotonic() - t0), flush=True)
    for name, reason in _stop_shared():
        failed.append("shared:" + name)
        print("FAIL shared server %s: %s" % (name, reason), flush=True)
    print("%d test(s), %d failed, %.1f s%s" % (len(tests), len(failed), time.monotonic() - started,
                                               (": " + ", ".join(failed)) if failed else ""), flush=True)
    if os.environ.get("SY_KEEP") != "1" and not failed:
        for d in _scratch_dirs:
            shutil.rmtree(d, ignore_errors=True)
    elif failed:
        print("scratch directories kept: %s" % " ".join(_scratch_dirs))
    sys.exit(1 if failed else 0)
