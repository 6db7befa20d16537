"""02_kafka: the reference application's sign-up and payment events against the embedded broker (records checked with
kcat; request-reply, user lookup and payment processing are in 03_request_reply), the durability of the store across a restart, and the consumer side: retries with backoff, then the
dead-letter topic with its x-original-* headers; invalid payloads go to the DLQ at once.

The embedded broker's consumer-group join takes about 3 s: every wait on the consumer side is a bounded condition
(KAFKA_TIMEOUT), never a sleep."""

import json
import os
import re
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sy  # noqa: E402
from sy import Switchyard, assert_json_error, check, eq  # noqa: E402

KAFKA_TIMEOUT = 30


def unique(prefix):
    return "%s-%d-%d" % (prefix, os.getpid(), int(time.monotonic() * 1000))


def records_with(s, topic, pred, what, count=1):
    """Waits until `topic` holds at least `count` records satisfying pred(key, value, headers); returns them."""
    def found():
        recs = [r for r in s.kcat_dump(topic) if pred(*r)]
        return recs if len(recs) >= count else None
    return s.wait_for(found, KAFKA_TIMEOUT, what, interval=0.3)


def json_value(v):
    try:
        return json.loads(v)
    except (TypeError, ValueError):
        return None


# -- the reference application -------------------------------------------------------------------------------------

def test_sign_up_emits_create_user_and_rejects_duplicate_email(bin):
    with Switchyard(bin) as s:
        r = s.post_json("/auth/sign-up", {"name": "Ada Lovelace", "email": "Ada@Example.com"})
        eq(r.status, 202, "status of a valid sign-up (%r)" % r.body[:200])
        check(isinstance(r.json, dict) and set(r.json) == {"id"} and isinstance(r.json["id"], int),
              "the 202 body is not {\"id\": N}: %r" % r.body)
        uid = r.json["id"]
        recs = records_with(s, "create_user", lambda k, v, h: k == str(uid), "a create_user record keyed %d" % uid)
        eq(len(recs), 1, "create_user records keyed %d" % uid)
        value = json_value(recs[0][1])
        check(isinstance(value, dict), "the create_user value is not a JSON object: %r" % recs[0][1])
        eq((value.get("name"), value.get("email")), ("Ada Lovelace", "Ada@Example.com"), "name and email of the event")
        # the auth consumer (group auth-consumer) stores it
        s.wait_for_log(r"user %d stored" % uid, timeout=KAFKA_TIMEOUT)

        for email in ["Ada@Example.com", "ada@example.com", "ADA@EXAMPLE.COM"]:
            assert_json_error(s.post_json("/auth/sign-up", {"name": "Other", "email": email}), 409)
        # a rejected sign-up emits nothing
        users = [json_value(v) for _, v, _ in s.kcat_dump("create_user")]
        eq(len([u for u in users if u and u.get("email", "").lower() == "ada@example.com"]), 1,
           "create_user records for ada@example.com after the duplicates")

        r = s.post_json("/auth/sign-up", {"name": "Grace", "email": "grace@example.com"})
        eq(r.status, 202, "status of a second user's sign-up")
        check(r.json["id"] != uid, "two users got the same id %d" % uid)


def test_payment_is_accepted_and_emitted(bin):
    with Switchyard(bin) as s:
        r = s.post_json("/payments/pay", {"userId": 1, "amount": 25.5})
        eq(r.status, 202, "status of a valid payment (%r)" % r.body[:200])
        check(isinstance(r.json, dict) and isinstance(r.json.get("id"), int), "no id in %r" % r.body)
        pid = r.json["id"]
        recs = records_with(s, "process_payment", lambda k, v, h: k == str(pid),
                            "a process_payment record keyed %d" % pid)
        eq(json_value(recs[0][1]), {"userId": 1, "amount": 25.5}, "the process_payment value")


def test_store_survives_a_restart(bin):
    data_dir = os.path.join(sy.scratch_dir(), "data")
    with Switchyard(bin, data_dir=data_dir) as s:
        r = s.post_json("/auth/sign-up", {"name": "Linus", "email": "linus@example.com"})
        eq(r.status, 202, "status of the sign-up before the restart")
        first_id = r.json["id"]
    with Switchyard(bin, data_dir=data_dir) as s:
        assert_json_error(s.post_json("/auth/sign-up", {"name": "Linus again", "email": "LINUS@example.com"}), 409)
        r = s.post_json("/auth/sign-up", {"name": "Ken", "email": "ken@example.com"})
        eq(r.status, 202, "status of a new sign-up after the restart")
        check(r.json["id"] > first_id, "the id sequence restarted: %d after %d" % (r.json["id"], first_id))


# -- the consumer side (a routes file of the test's own) -----------------------------------------------------------

CONSUMER_ROUTES = r"""
local Job = dto.object { n = dto.integer {} }

kafka.on("jobs", { group = "%(jobs_group)s", retries = 2, backoff_ms = 50 }, function(msg)
  log.info("jobs handler called for offset %%d", msg.offset)
  error("always fails")
end)

kafka.on("typed", { group = "%(typed_group)s", body = Job, retries = 2, backoff_ms = 50 }, function(msg)
  log.info("typed handler got n=%%d", msg.value.n)
end)

-- emits the JSON body to the topic; answers where the record went
http.post("/emit/:topic", function(req)
  local r, err = kafka.emit(req.params.topic, req.body, { key = req.query.key })
  if not r then return 503, { message = err } end
  return 202, r
end)
"""


def consumer_routes():
    return sy.write_routes(CONSUMER_ROUTES % {"jobs_group": unique("jobs"), "typed_group": unique("typed")})


# One worker: a single consumer per group, so no rebalance can hand a message to a second consumer and make the
# attempt counts below vary (redelivery after a rebalance is allowed by at-least-once).

def test_failing_handler_is_retried_then_dead_lettered(bin):
    with Switchyard(bin, consumer_routes(), workers=1,
                    allowed_errors=[r"handler for jobs failed \(attempt [123] of 3\).*always fails"]) as s:
        r = s.post_json("/emit/jobs?key=job-1", {"n": 1})
        eq(r.status, 202, "status of the emit (%r)" % r.body[:200])
        partition, offset = r.json["partition"], r.json["offset"]
        recs = records_with(s, "jobs.dlq", lambda k, v, h: k == "job-1", "the message on jobs.dlq")
        key, value, headers = recs[0]
        eq(json_value(value), {"n": 1}, "the dead-lettered value")
        eq(headers.get("x-original-topic"), "jobs", "x-original-topic")
        eq(headers.get("x-original-partition"), str(partition), "x-original-partition")
        eq(headers.get("x-original-offset"), str(offset), "x-original-offset")
        check("always fails" in (headers.get("x-error") or ""), "x-error: %r" % headers.get("x-error"))
        eq(len(s.log_matches(r"jobs handler called for offset %d\b" % offset)), 3, "handler calls")
        failures = s.log_matches(r"handler for jobs failed \(attempt \d+ of \d+\)")
        eq([re.search(r"attempt (\d+ of \d+)", l).group(1) for l in failures], ["1 of 3", "2 of 3", "3 of 3"],
           "the attempts logged")
        eq(len(s.kcat_dump("jobs.dlq")), 1, "records on jobs.dlq")


def test_invalid_payload_goes_to_dlq_without_retries(bin):
    with Switchyard(bin, consumer_routes(), workers=1) as s:
        eq(s.post_json("/emit/typed?key=bad", {"n": "not a number"}).status, 202, "status of the invalid emit")
        eq(s.post_json("/emit/typed?key=good", {"n": 7}).status, 202, "status of the valid emit")
        s.wait_for_log(r"typed handler got n=7", timeout=KAFKA_TIMEOUT)
        recs = records_with(s, "typed.dlq", lambda k, v, h: k == "bad", "the invalid message on typed.dlq")
        _, value, headers = recs[0]
        eq(json_value(value), {"n": "not a number"}, "the dead-lettered value")
        eq(headers.get("x-original-topic"), "typed", "x-original-topic")
        check((headers.get("x-error") or "").startswith("validation failed"), "x-error: %r" % headers.get("x-error"))
        eq(len(s.log_matches(r"validation failed")), 1, "validation failures logged")
        eq(s.log_matches(r"handler for typed failed"), [], "retries of an invalid message")
        eq(s.log_matches(r"typed handler got"), [l for l in s.log_matches(r"typed handler got n=7")],
           "handler calls (only the valid message)")
        eq([k for k, _, _ in s.kcat_dump("typed.dlq")], ["bad"], "keys on typed.dlq")


if __name__ == "__main__":
    sy.run(globals())
