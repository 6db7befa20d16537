"""04_reload_shutdown: hot reload under load, a broken file refused, SIGHUP, and a shutdown that loses nothing.

Reload: while a bounded loop of requests runs, the routes file is rewritten (a validation rule changes, an endpoint
appears); no request fails and the new behaviour answers within a second. A broken file keeps the old routes and
the log names file and line. Shutdown: under sign-up load, SIGTERM; every sign-up answered 202 is on the topic
afterwards (the broker lives in another process, so it outlives the router), and the process exits 0 in time.
Broker down: sign-ups get 503 + Retry-After within the delivery timeout, never a hang; after recovery everything
answered 202 is on the topic exactly once.
"""

import json
import os
import shutil
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sy  # noqa: E402
from sy import Switchyard, assert_json_error, check, eq, scratch_dir, write_routes  # noqa: E402

KAFKA_TIMEOUT = 30
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

V1 = '''
local Body = dto.object { name = dto.string { min_length = 2 } }
http.post("/things", { body = Body }, function(req) return 201, { name = req.body.name, version = 1 } end)
'''

V2 = '''
local Body = dto.object { name = dto.string { min_length = 5 } }
http.post("/things", { body = Body }, function(req) return 201, { name = req.body.name, version = 2 } end)
http.get("/new", function() return 200, { new = true } end)
'''


class Load:
    """A bounded loop of requests on keep-alive connections from a few threads; records every status."""

    def __init__(self, s, fn, threads=3, seconds=6):
        self.s, self.fn, self.statuses, self.errors = s, fn, [], []
        self.stop_at = time.monotonic() + seconds
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(threads)]

    def run(self, t):
        i = 0
        while time.monotonic() < self.stop_at:
            conn = self.s.connection()
            try:
                while time.monotonic() < self.stop_at:
                    i += 1
                    method, path, body = self.fn(t, i)
                    conn.request(method, path, body=json.dumps(body), headers={"Content-Type": "application/json"})
                    r = conn.getresponse()
                    data = r.read()
                    self.statuses.append((r.status, data))
                    if r.getheader("connection", "").lower() == "close":
                        break
            except Exception as e:  # noqa: BLE001 - recorded and asserted on by the test
                self.errors.append(repr(e))
                time.sleep(0.01)
            finally:
                conn.close()

    def __enter__(self):
        [t.start() for t in self.threads]
        return self

    def __exit__(self, *exc):
        [t.join() for t in self.threads]
        return False


def test_reload_under_load_fails_no_request(bin):
    d = scratch_dir("sy-reload-")
    path = write_routes(V1, directory=d)
    with Switchyard(bin, path, allowed_errors=[r"does not load"]) as s:
        eq(s.post_json("/things", {"name": "abc"}).status, 201, "v1 accepts 3 characters")
        with Load(s, lambda t, i: ("POST", "/things", {"name": "abcdef"}), seconds=5) as load:
            time.sleep(1)
            t0 = time.monotonic()
            with open(path + ".tmp", "w") as f:
                f.write(V2)
            os.rename(path + ".tmp", path)  # how editors save
            s.wait_for(lambda: s.request("GET", "/new").status == 200, 3, "the new endpoint")
            applied = time.monotonic() - t0
            r = s.post_json("/things", {"name": "abc"})
            assert_json_error(r, 400, "name must be longer than or equal to 5 characters")
            check(applied < 1.0, "the reload took %.2f s to show (limit 1 s)" % applied)
            print("     reload visible after %.0f ms" % (applied * 1000))
            # a broken file: the old (v2) routes stay
            with open(path, "a") as f:
                f.write("\nthis is not lua (\n")
            s.wait_for_log(r"routes\.lua:\d+: .*previous routes stay active|does not load.*routes\.lua:\d+", 5)
            eq(s.request("GET", "/new").status, 200, "v2 still serves after a broken write")
        check(not load.errors, "connection errors during the reloads: %r" % load.errors[:3])
        bad = [(st, b[:80]) for st, b in load.statuses if st != 201]
        check(not bad, "%d of %d requests failed during the reloads: %r" % (len(bad), len(load.statuses), bad[:3]))
        check(len(load.statuses) > 100, "the load ran (%d requests)" % len(load.statuses))
        versions = {json.loads(b)["version"] for st, b in load.statuses}
        eq(versions, {1, 2}, "both versions answered during the load")


def test_sighup_reloads_and_check_gives_the_same_verdict(bin):
    d = scratch_dir("sy-hup-")
    path = write_routes(V1, directory=d)
    with Switchyard(bin, path, allowed_errors=[r"does not load"]) as s:
        # change the file without inotify seeing a .lua event? it will; SIGHUP must work on its own too
        s.send_signal(signal.SIGHUP)
        s.wait_for_log(r"SIGHUP: .* reloaded", 5)
        eq(s.post_json("/things", {"name": "abc"}).json["version"], 1, "still v1 after a reload of the same file")
    broken = write_routes("http.get('/x', function() end)\nlocal t = dto.string { min_length = 'x' }\n",
                          name="broken.lua")
    rc, out, err = sy.run_binary(bin, ["--check", broken])
    check(rc == 1, "--check on a bad schema: exit %s" % rc)
    check("broken.lua:2" in (out + err), "--check names file and line: %r" % (out + err))


GROUPS_V1 = '''
local seen = store.open("seen")
http.post("/emit/:topic", { params = dto.object { topic = dto.string {} } }, function(req)
  assert(kafka.emit(req.params.topic, { n = req.body.n }))
  return 202, { ok = true }
end)
http.get("/seen/:topic/:n", function(req)
  return seen:get(req.params.topic .. "/" .. req.params.n) and 200 or 404, {}
end)
kafka.topic("alpha", { partitions = 2 })
kafka.topic("beta", { partitions = 2 })
kafka.on("alpha", { group = "GROUP-a" }, function(msg) seen:put("alpha/" .. msg.value.n, true) end)
'''

GROUPS_V2 = GROUPS_V1.replace(
    'kafka.on("alpha", { group = "GROUP-a" }, function(msg) seen:put("alpha/" .. msg.value.n, true) end)',
    'kafka.on("beta", { group = "GROUP-b" }, function(msg) seen:put("beta/" .. msg.value.n, true) end)')


def test_consumer_groups_follow_the_reloaded_file(bin):
    d = scratch_dir("sy-groups-")
    tag = "%d-%d" % (os.getpid(), int(time.monotonic() * 1000))
    path = write_routes(GROUPS_V1.replace("GROUP", tag), directory=d)
    with Switchyard(bin, path) as s:
        eq(s.post_json("/emit/alpha", {"n": 1}).status, 202, "emit alpha")
        s.wait_for(lambda: s.request("GET", "/seen/alpha/1").status == 200, KAFKA_TIMEOUT, "alpha handled")
        with open(path + ".tmp", "w") as f:
            f.write(GROUPS_V2.replace("GROUP", tag))
        os.rename(path + ".tmp", path)
        s.wait_for_log(r"consumer group %s-a removed by the reload" % tag, 10)
        eq(s.post_json("/emit/beta", {"n": 2}).status, 202, "emit beta")
        s.wait_for(lambda: s.request("GET", "/seen/beta/2").status == 200, KAFKA_TIMEOUT, "beta handled after reload")
        import urllib.request

        def groups():
            with urllib.request.urlopen("http://127.0.0.1:%d/status" % s.admin_port, timeout=10) as r:
                return {c["group"] for w in json.loads(r.read())["workers"] for c in w["consumers"]}
        s.wait_for(lambda: groups() == {"%s-b" % tag}, 5, "only the new group in /status")
        eq(s.post_json("/emit/alpha", {"n": 3}).status, 202, "emit alpha again")
        eq(s.post_json("/emit/beta", {"n": 4}).status, 202, "emit beta again")
        s.wait_for(lambda: s.request("GET", "/seen/beta/4").status == 200, KAFKA_TIMEOUT, "the later beta handled")
        eq(s.request("GET", "/seen/alpha/3").status, 404, "alpha is no longer consumed")


def broker_only():
    topics = ["create_user", "process_payment", "payment_processed", "payment_failed", "create_user.dlq",
              "get_user", "get_user.dlq", "process_payment.dlq", "http_telemetry"]
    lines = ['http.static("GET", "/alive", 200, { ok = true })']
    lines += ['kafka.topic("%s", { partitions = 4 })' % t for t in topics]
    lines.append('kafka.topic("get_user.reply", { partitions = 16 })')
    return write_routes("\n".join(lines) + "\n", name="broker.lua")


def signup_load(s, prefix, seconds, threads=4):
    return Load(s, lambda t, i: ("POST", "/auth/sign-up",
                                 {"name": "L", "email": "%s-%d-%d@example.com" % (prefix, t, i)}),
                threads=threads, seconds=seconds)


def acked_ids(load):
    return sorted(json.loads(b)["id"] for st, b in load.statuses if st == 202)


def test_sigterm_under_load_loses_no_acknowledged_sign_up(bin):
    with Switchyard(bin, broker_only()) as broker:
        boot = broker.bootstrap()
        router = Switchyard(bin, None, ["--brokers", boot, "--shutdown-timeout", "5"])
        router.start()
        try:
            with signup_load(router, "term", seconds=4) as load:
                time.sleep(1.5)
                t0 = time.monotonic()
                router.send_signal(signal.SIGTERM)
                rc = router.wait_exit(15)
                took = time.monotonic() - t0
            eq(rc, 0, "exit status after SIGTERM")
            check(took < 7, "exit took %.1f s (shutdown timeout 5 s)" % took)
        finally:
            router._kill_quietly()
        ids = acked_ids(load)
        check(len(ids) > 20, "sign-ups were acknowledged before the signal (%d)" % len(ids))
        keys = broker.wait_for(lambda: (lambda ks: ks if set(map(str, ids)) <= ks else None)(
            {k for k, v, h in broker.kcat_dump("create_user")}), KAFKA_TIMEOUT, "every acknowledged sign-up on create_user")
        print("     %d sign-ups acknowledged, all on the topic; exit after %.1f s" % (len(ids), took))


def test_consumed_offsets_are_committed_at_shutdown(bin):
    """After a graceful stop, the group resumes after what its handlers finished: nothing is handled twice."""
    with Switchyard(bin, broker_only()) as broker:
        boot = broker.bootstrap()
        with Switchyard(bin, None, ["--brokers", boot]) as router:
            ids = [router.post_json("/auth/sign-up", {"name": "C", "email": "commit-%d@example.com" % i}).json["id"]
                   for i in range(20)]
            router.wait_for(lambda: router.request("GET", "/users/%d" % ids[-1]).status == 200, KAFKA_TIMEOUT,
                            "the last user stored (its create_user handled)")
            router.wait_for(lambda: all(router.request("GET", "/users/%d" % i).status == 200 for i in ids),
                            KAFKA_TIMEOUT, "every user stored")
        # the router stopped (exit 0 checked by the harness); a member of the same group starts where it left off
        out = _consume_group(boot, "auth-consumer", "create_user", seconds=12)
        eq(out, [], "records handed out again after a graceful stop")


def _consume_group(boot, group, topic, seconds):
    """Joins `group` with kcat for `seconds` (the embedded broker's join takes ~3 s) and returns what it received."""
    import subprocess
    try:
        p = subprocess.run(["kcat", "-b", boot, "-G", group, "-X", "auto.offset.reset=earliest",
                            "-X", "session.timeout.ms=6000", "-q", topic],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=seconds)
        out = p.stdout
    except subprocess.TimeoutExpired as e:
        out = e.stdout or b""
    return [l for l in out.decode("utf-8", "replace").splitlines() if l.strip()]


def test_broker_down_gives_503_then_recovers_without_loss(bin):
    with Switchyard(bin, None, ["--fault-injection"], allowed_errors=[r"."]) as s:
        admin = "http://127.0.0.1:%d" % s.admin_port
        import urllib.request
        uid = s.post_json("/auth/sign-up", {"name": "Before", "email": "before-%d@example.com" % os.getpid()})
        eq(uid.status, 202, "sign-up before the outage")
        with urllib.request.urlopen(urllib.request.Request(admin + "/faults/brokers/1/down", method="POST")) as r:
            eq(r.status, 200, "broker down")
        t0 = time.monotonic()
        r = s.post_json("/auth/sign-up", {"name": "During", "email": "during-%d@example.com" % os.getpid()})
        took = time.monotonic() - t0
        assert_json_error(r, 503)
        check(r.headers.get("retry-after"), "503 without Retry-After")
        check(took < 9, "the 503 took %.1f s (delivery timeout 5 s)" % took)
        with urllib.request.urlopen(urllib.request.Request(admin + "/faults/brokers/1/up", method="POST")) as r:
            eq(r.status, 200, "broker up")
        # the e-mail of the refused sign-up was released: it can sign up now
        r = s.wait_for(lambda: (lambda r: r if r.status == 202 else None)(s.post_json(
            "/auth/sign-up", {"name": "During", "email": "during-%d@example.com" % os.getpid()})),
            KAFKA_TIMEOUT, "sign-up after the broker came back")
        acked = [uid.json["id"], r.json["id"]]
        recs = s.wait_for(lambda: (lambda ks: ks if all(str(i) in ks for i in acked) else None)(
            [k for k, v, h in s.kcat_dump("create_user")]), KAFKA_TIMEOUT, "acknowledged sign-ups on the topic")
        for i in acked:
            eq(recs.count(str(i)), 1, "records keyed %d (exactly once)" % i)
        print("     503 after %.1f s with the broker down" % took)



def fault(s, path):
    import urllib.request
    req = urllib.request.Request("http://127.0.0.1:%d/faults/%s" % (s.admin_port, path), method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        eq(r.status, 200, "fault %s" % path)


def test_consumer_resumes_after_a_broker_restart(bin):
    with Switchyard(bin, None, ["--fault-injection"], allowed_errors=[r"."]) as s:
        a = s.post_json("/auth/sign-up", {"name": "A", "email": "restart-a-%d@example.com" % os.getpid()})
        eq(a.status, 202, "sign-up before")
        s.wait_for(lambda: s.request("GET", "/users/%d" % a.json["id"]).status == 200, KAFKA_TIMEOUT, "A stored")
        fault(s, "brokers/1/down")
        fault(s, "brokers/1/up")
        b = s.wait_for(lambda: (lambda r: r if r.status == 202 else None)(s.post_json(
            "/auth/sign-up", {"name": "B", "email": "restart-b-%d@example.com" % os.getpid()})),
            KAFKA_TIMEOUT, "a sign-up accepted after the restart")
        s.wait_for(lambda: s.request("GET", "/users/%d" % b.json["id"]).status == 200, KAFKA_TIMEOUT,
                   "B stored: the consumer resumed after the restart")
        eq(s.request("GET", "/users/%d" % a.json["id"]).status, 200, "A still there")


EMIT_ONLY = '''
kafka.topic("faulty", { partitions = 1 })
http.post("/emit", function(req)
  local rec, err, retry = kafka.emit("faulty", { n = req.body.n })
  if not rec then return http.unavailable(err, retry) end
  return 202, rec
end)
'''


def test_produce_errors_retriable_then_permanent_and_a_slow_broker(bin):
    with Switchyard(bin, write_routes(EMIT_ONLY), ["--fault-injection"], workers=1,
                    allowed_errors=[r"."]) as s:
        eq(s.post_json("/emit", {"n": 0}).status, 202, "emit before the faults")
        fault(s, "produce-errors/6/3")  # NOT_LEADER_OR_FOLLOWER x 3: retriable, librdkafka retries
        r = s.post_json("/emit", {"n": 1})
        eq(r.status, 202, "emit through retriable produce errors (%r)" % r.body[:200])
        fault(s, "produce-errors/10/20")  # MESSAGE_TOO_LARGE: permanent
        r = s.post_json("/emit", {"n": 2})
        assert_json_error(r, 503)
        check(r.headers.get("retry-after"), "503 without Retry-After")
        # drain the remaining pushed errors: each failing emit consumes one produce request
        s.wait_for(lambda: s.post_json("/emit", {"n": 3}).status == 202, KAFKA_TIMEOUT, "emits succeed again")
        fault(s, "brokers/1/rtt/400")
        t0 = time.monotonic()
        eq(s.post_json("/emit", {"n": 4}).status, 202, "emit with a slow broker")
        took = time.monotonic() - t0
        check(took >= 0.35, "the 400 ms round trip was not felt (%.2f s)" % took)
        fault(s, "brokers/1/rtt/0")
        values = [json.loads(v)["n"] for k, v, h in s.kcat_dump("faulty")]
        check(2 not in values, "the refused record is not on the topic: %r" % values)
        for n in (0, 1, 4):
            eq(values.count(n), 1, "records with n=%d (exactly once)" % n)


if __name__ == "__main__":
    sy.run(globals())
