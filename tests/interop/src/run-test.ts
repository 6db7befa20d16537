// The interop test: switchyard (tests/interop/routes.lua, embedded broker) against a NestJS 11 microservice and
// ClientKafka (src/nest-app.ts), both directions, plus a byte-level capture of every record on the test's topics.
//
//   node dist/run-test.js --bin build/switchyard [--routes tests/interop/routes.lua] [--data-dir DIR] [--verbose]
//
// --data-dir: an empty directory for switchyard's data (default: a fresh temporary one, removed at the end).
//
// Every wait is bounded; the whole run is bounded by DEADLINE_MS. Exit 0 when every check passed.
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Kafka, logLevel, type Consumer, type IHeaders } from 'kafkajs';
import { lastValueFrom, timeout } from 'rxjs';
import { seen, startNest, SY_TOPICS, type NestSide } from './nest-app';

const DEADLINE_MS = 85_000;
const READY_TIMEOUT_MS = 30_000;
const REQUEST_TIMEOUT_MS = 15_000;
const CAPTURE_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 15_000;

// ---- arguments --------------------------------------------------------------------------------------------------

function arg(name: string, fallback?: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
}
const BIN = path.resolve(arg('--bin') ?? '');
const ROUTES = path.resolve(arg('--routes', path.join(__dirname, '..', 'routes.lua'))!);
const DATA_DIR = arg('--data-dir') ? path.resolve(arg('--data-dir')!) : undefined;
const VERBOSE = process.argv.includes('--verbose') || !!process.env.INTEROP_VERBOSE;

// ---- small helpers ----------------------------------------------------------------------------------------------

const t0 = Date.now();
function log(msg: string): void {
  process.stdout.write(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s] ${msg}\n`);
}
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function waitFor<T>(what: string, ms: number, probe: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== null && (v as unknown) !== false) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`);
    }
    await sleep(50);
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

// A byte string as readable text when it is printable ASCII, else as hex.
function bytes(b: Buffer | string | null | undefined): string {
  if (b === null || b === undefined) return 'null';
  const buf = Buffer.isBuffer(b) ? b : Buffer.from(b);
  if (buf.length > 0 && [...buf].every((c) => c >= 0x20 && c < 0x7f)) return JSON.stringify(buf.toString());
  return `<hex ${buf.toString('hex') || '(empty)'}>`;
}

interface HttpResult {
  status: number;
  contentType: string;
  text: string;
  json: any;
  ms: number;
}
async function http(method: string, url: string, body?: string): Promise<HttpResult> {
  const start = Date.now();
  const res = await fetch(url, {
    method,
    body,
    headers: body !== undefined ? { 'content-type': 'application/json' } : undefined,
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS + 5000),
  });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, contentType: res.headers.get('content-type') ?? '', text, json, ms: Date.now() - start };
}

// Runs an assertion on an HTTP result; a failure also shows the response as it came.
function showBody(r: HttpResult, fn: () => void): void {
  try {
    fn();
  } catch (e: any) {
    e.message += `\nHTTP ${r.status} ${r.contentType}: ${r.text}`;
    throw e;
  }
}

// ---- checks -----------------------------------------------------------------------------------------------------

const results: { name: string; ok: boolean; detail?: string }[] = [];
async function check(name: string, fn: () => Promise<void> | void): Promise<void> {
  try {
    await fn();
    results.push({ name, ok: true });
    log(`PASS ${name}`);
  } catch (e: any) {
    const detail = e?.message ?? String(e);
    results.push({ name, ok: false, detail });
    log(`FAIL ${name}\n       ${detail.split('\n').join('\n       ')}`);
  }
}

// ---- switchyard ---------------------------------------------------------------------------------------------------

let sy: ChildProcess | undefined;
let syExit: Promise<number | string | null> | undefined;
let dataDir = '';
let syLogPath = '';

function syLogTail(lines = 60): string {
  try {
    return fs.readFileSync(syLogPath, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

async function startSwitchyard(): Promise<{ base: string; admin: string; brokers: string[] }> {
  if (!fs.existsSync(BIN)) throw new Error(`switchyard binary not found: ${BIN} (pass --bin)`);
  const [port, adminPort] = [await freePort(), await freePort()];
  dataDir = DATA_DIR ?? fs.mkdtempSync(path.join(os.tmpdir(), 'switchyard-interop-'));
  syLogPath = path.join(dataDir, 'switchyard.log');
  const out = fs.openSync(syLogPath, 'w');
  const args = [ROUTES, '--listen', `127.0.0.1:${port}`, '--admin', `127.0.0.1:${adminPort}`, '--data-dir', dataDir,
    '--workers', '1'];
  log(`starting ${BIN} ${args.join(' ')}`);
  sy = spawn(BIN, args, { stdio: ['ignore', out, out] });
  syExit = new Promise((resolve) => sy!.once('exit', (code, signal) => resolve(signal ?? code)));
  const admin = `http://127.0.0.1:${adminPort}`;
  let exited = false;
  void syExit.then(() => (exited = true));
  await waitFor('switchyard /readyz = 200', READY_TIMEOUT_MS, async () => {
    if (exited) throw new Error(`switchyard exited during startup:\n${syLogTail()}`);
    const r = await fetch(`${admin}/readyz`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined);
    return r?.status === 200 ? true : undefined;
  }).catch((e) => {
    throw new Error(`${e.message}\n${syLogTail()}`);
  });
  const bootstrap = fs.readFileSync(path.join(dataDir, 'kafka.bootstrap'), 'utf8').trim();
  log(`switchyard ready; embedded broker ${bootstrap}`);
  return { base: `http://127.0.0.1:${port}`, admin, brokers: bootstrap.split(',').map((s) => s.trim()) };
}

// ---- wire capture -----------------------------------------------------------------------------------------------

interface Rec {
  topic: string;
  partition: number;
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  headers: Record<string, Buffer>;
}
const captured: Rec[] = [];
const NEST_TOPICS = ['nest_echo', 'nest_fail', 'nest_number', 'nest_null'];
const CAPTURE_TOPICS = [...SY_TOPICS, ...NEST_TOPICS].flatMap((t) => [t, `${t}.reply`]).concat(['nest_silent']);

function headerMap(h: IHeaders | undefined): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const [k, v] of Object.entries(h ?? {})) {
    if (v === undefined) continue;
    const one = Array.isArray(v) ? v[v.length - 1] : v;
    out[k] = Buffer.isBuffer(one) ? one : Buffer.from(String(one));
  }
  return out;
}

async function startCapture(brokers: string[]): Promise<Consumer> {
  const kafka = new Kafka({ clientId: 'interop-capture', brokers, logLevel: VERBOSE ? logLevel.INFO : logLevel.ERROR });
  const consumer = kafka.consumer({ groupId: 'interop-capture', maxWaitTimeInMs: 10, sessionTimeout: 10000,
    heartbeatInterval: 1000 });
  await consumer.connect();
  await consumer.subscribe({ topics: CAPTURE_TOPICS, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ topic, partition, message }) => {
      captured.push({ topic, partition, offset: message.offset, key: message.key ?? null, value: message.value ?? null,
        headers: headerMap(message.headers) });
    },
  });
  return consumer;
}

function dumpWire(): void {
  log('wire capture (every record on the test topics; header and value bytes, hex when not printable):');
  const order = new Map(CAPTURE_TOPICS.map((t, i) => [t, i]));
  const recs = [...captured].sort((a, b) => (order.get(a.topic)! - order.get(b.topic)!) || Number(a.offset) - Number(b.offset));
  for (const r of recs) {
    const hs = Object.entries(r.headers).map(([k, v]) => `${k}=${bytes(v)}`).join(' ');
    process.stdout.write(`    ${r.topic}[${r.partition}]@${r.offset} key=${bytes(r.key)} headers{${hs}} value=${bytes(r.value)}\n`);
  }
}

const NEST_HEADERS = ['kafka_correlationId', 'kafka_replyTopic', 'kafka_replyPartition'];
const hstr = (r: Rec, k: string) => r.headers[k]?.toString();

// The request record on `topic` and the reply to it; asserts the request/reply header contract of DESIGN section 3.
function requestAndReply(topic: string, match?: (req: Rec) => boolean): { req: Rec; rep: Rec } {
  const reqs = captured.filter((r) => r.topic === topic && (!match || match(r)));
  assert.equal(reqs.length, 1, `one request record on ${topic}, got ${reqs.length}`);
  const req = reqs[0];
  // the Nest headers, plus switchyard's tracing headers (x-request-id of the HTTP request that asked, traceparent
  // when its client sent one): NestJS ignores headers it does not know
  const nestOnly = Object.keys(req.headers).filter((k) => k !== 'x-request-id' && k !== 'traceparent');
  assert.deepEqual(nestOnly.sort(), [...NEST_HEADERS].sort(), `request headers on ${topic}`);
  assert.equal(hstr(req, 'kafka_replyTopic'), `${topic}.reply`);
  assert.match(hstr(req, 'kafka_replyPartition')!, /^(0|[1-9][0-9]*)$/, 'kafka_replyPartition is a decimal string');
  assert.equal(req.key, null, 'request key');
  const id = hstr(req, 'kafka_correlationId');
  const reps = captured.filter((r) => r.topic === `${topic}.reply` && hstr(r, 'kafka_correlationId') === id);
  assert.equal(reps.length, 1, `one reply record on ${topic}.reply with kafka_correlationId ${id}, got ${reps.length}`);
  const rep = reps[0];
  assert.equal(rep.partition, Number(hstr(req, 'kafka_replyPartition')), 'the reply went to kafka_replyPartition');
  assert.equal(rep.headers['kafka_nest-is-disposed']?.toString('hex'), '00', 'kafka_nest-is-disposed is one 0x00 byte');
  return { req, rep };
}

// ---- the test ---------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const { base, brokers } = await startSwitchyard();

  log('starting the wire capture consumer and the NestJS microservice + ClientKafka (group joins take ~3 s)');
  let nest: NestSide | undefined;
  let capture: Consumer | undefined;
  try {
    [capture, nest] = await Promise.all([startCapture(brokers), startNest(brokers, VERBOSE)]);
    log('NestJS microservice and ClientKafka connected');
    const send = (pattern: string, data: unknown) =>
      lastValueFrom(nest!.client.send(pattern, data).pipe(timeout(REQUEST_TIMEOUT_MS)));

    // ---- NestJS ClientKafka.send -> switchyard kafka.reply ----
    const user = { id: 7, name: 'Ada', tags: ['a', 'b'], nested: { n: 1.5, ok: true, none: null } };
    await check('nest send(sy_user) gets switchyard reply (deep-equal object)', async () => {
      assert.deepEqual(await send('sy_user', user), { ...user, by: 'switchyard', topic: 'sy_user' });
    });
    await check('nest send(sy_fail) errors with switchyard message', async () => {
      await assert.rejects(send('sy_fail', { id: 1 }), (err: unknown) => {
        assert.deepEqual(err, { status: 'error', message: 'sy_fail refused 1' });
        return true;
      });
    });
    await check('nest send(sy_crash) (a Lua error) errors with "internal error <id>"', async () => {
      await assert.rejects(send('sy_crash', { id: 2 }), (err: any) => {
        assert.equal(err?.status, 'error');
        assert.match(String(err?.message), /^internal error [0-9a-f]+$/);
        assert.deepEqual(Object.keys(err).sort(), ['message', 'status']);
        return true;
      });
    });
    await check('nest send(sy_text) string in, string out', async () => {
      assert.equal(await send('sy_text', 'hello'), 'sy:hello');
    });
    await check('nest send(sy_number) gets "42" (text; NestJS parses only {/[ as JSON)', async () => {
      assert.equal(await send('sy_number', { x: 1 }), '42');
    });
    await check('nest send(sy_null) gets null', async () => {
      assert.equal(await send('sy_null', { x: 1 }), null);
    });
    const empties = { id: 8, name: 'E', tags: [], nested: { list: [], obj: {} } };
    await check('nest send(sy_user) with empty arrays: [] comes back as []', async () => {
      assert.deepEqual(await send('sy_user', empties), { ...empties, by: 'switchyard', topic: 'sy_user' });
    });

    // ---- switchyard kafka.request (HTTP routes) -> NestJS @MessagePattern ----
    const echoBody = { id: 3, name: 'Bob', tags: ['x'], nested: { k: 'v', n: 2.25, none: null } };
    await check('switchyard request(nest_echo) gets the NestJS object', async () => {
      const r = await http('POST', `${base}/nest/echo`, JSON.stringify(echoBody));
      assert.equal(r.status, 200, r.text);
      showBody(r, () => assert.deepEqual(r.json, { type: 'table', value: { echoed: echoBody, by: 'nestjs' } }));
      const s = seen.find((x) => x.pattern === 'nest_echo');
      assert.ok(s, 'the NestJS handler ran');
      assert.deepEqual(s.data, echoBody, 'NestJS decoded the request value');
      assert.equal(s.headers.kafka_replyTopic, 'nest_echo.reply');
    });
    await check('switchyard request(nest_number): NestJS returns 42 -> wire "42" -> Lua string "42" (NestJS parity)', async () => {
      const r = await http('GET', `${base}/nest/number`);
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.json, { type: 'string', value: '42' });
    });
    await check('switchyard request(nest_null) -> nil -> route answers 404', async () => {
      const r = await http('GET', `${base}/nest/null`);
      assert.equal(r.status, 404, r.text);
      assert.equal(r.json?.message, 'nest_null answered null');
    });
    await check('switchyard request(nest_fail) -> nil, RpcException message -> 502', async () => {
      const r = await http('GET', `${base}/nest/fail`);
      assert.equal(r.status, 502, r.text);
      assert.equal(r.json?.message, 'nest_fail refused 13');
    });
    await check('switchyard request(nest_silent) with nobody answering -> 504 after its 500 ms timeout', async () => {
      const r = await http('GET', `${base}/nest/silent`);
      assert.equal(r.status, 504, r.text);
      assert.ok(r.ms >= 450 && r.ms < 5000, `took ${r.ms} ms`);
    });
    const emptyBody = { list: [], obj: {}, nested: { list: [] } };
    await check('switchyard request(nest_echo) with empty arrays: [] comes back as []', async () => {
      const r = await http('POST', `${base}/nest/echo`, JSON.stringify(emptyBody));
      assert.equal(r.status, 200, r.text);
      showBody(r, () => assert.deepEqual(r.json, { type: 'table', value: { echoed: emptyBody, by: 'nestjs' } }));
    });

    // ---- the bytes on the wire ----
    const expected = { sy_user: 2, 'sy_user.reply': 2, sy_fail: 1, 'sy_fail.reply': 1, sy_crash: 1, 'sy_crash.reply': 1, sy_text: 1, 'sy_text.reply': 1,
      sy_number: 1, 'sy_number.reply': 1, sy_null: 1, 'sy_null.reply': 1, nest_echo: 2, 'nest_echo.reply': 2,
      nest_number: 1, 'nest_number.reply': 1, nest_null: 1, 'nest_null.reply': 1, nest_fail: 1, 'nest_fail.reply': 1,
      nest_silent: 1 } as Record<string, number>;
    const count = (t: string) => captured.filter((r) => r.topic === t).length;
    await waitFor('the capture consumer to see every record', CAPTURE_TIMEOUT_MS,
      () => Object.entries(expected).every(([t, n]) => count(t) >= n) || undefined).catch((e) => {
      log(`capture incomplete: ${e.message}; have ${JSON.stringify(Object.fromEntries(Object.keys(expected).map((t) => [t, count(t)])))}`);
    });
    dumpWire();
    for (const x of seen) {
      log(`NestJS @MessagePattern('${x.pattern}') got data ${JSON.stringify(x.data)} headers ${JSON.stringify(x.headers)}`);
    }

    await check('wire: NestJS request to sy_user -> switchyard reply (headers, partition, value)', () => {
      const { req, rep } = requestAndReply('sy_user', (r) => JSON.parse(r.value!.toString()).id === 7);
      assert.equal(req.value!.toString(), JSON.stringify(user), 'NestJS request value is JSON.stringify(payload)');
      assert.equal(hstr(req, 'kafka_replyPartition'), '0', 'ClientKafka asks for its lowest assigned partition');
      assert.deepEqual(Object.keys(rep.headers).sort(), ['kafka_correlationId', 'kafka_nest-is-disposed']);
      assert.equal(rep.key, null, 'reply key');
      assert.deepEqual(JSON.parse(rep.value!.toString()), { ...user, by: 'switchyard', topic: 'sy_user' });
    });
    await check('wire: switchyard error reply on sy_fail.reply (kafka_nest-err JSON, null value)', () => {
      const { rep } = requestAndReply('sy_fail');
      assert.deepEqual(JSON.parse(hstr(rep, 'kafka_nest-err')!), { status: 'error', message: 'sy_fail refused 1' });
      assert.equal(rep.value, null, 'error reply value is null');
    });
    await check('wire: switchyard string / number / null replies', () => {
      assert.equal(requestAndReply('sy_text').req.value!.toString(), 'hello', 'NestJS sends a string as-is');
      assert.equal(requestAndReply('sy_text').rep.value!.toString(), 'sy:hello');
      assert.equal(requestAndReply('sy_number').rep.value!.toString(), '42');
      assert.equal(requestAndReply('sy_null').rep.value, null);
    });
    await check('wire: switchyard request to nest_echo -> NestJS reply (headers, partition, value)', () => {
      const { req, rep } = requestAndReply('nest_echo', (r) => JSON.parse(r.value!.toString()).id === 3);
      assert.equal(req.value!.toString(), JSON.stringify(echoBody), 'switchyard sent the raw body as the value');
      assert.deepEqual(Object.keys(rep.headers).sort(), ['kafka_correlationId', 'kafka_nest-is-disposed']);
      assert.deepEqual(JSON.parse(rep.value!.toString()), { echoed: echoBody, by: 'nestjs' });
    });
    await check('wire: NestJS number / null / error replies', () => {
      assert.equal(requestAndReply('nest_number').req.value!.toString(), '{"n":41}');
      assert.equal(requestAndReply('nest_number').rep.value!.toString(), '42', 'NestJS sends a number as its text');
      assert.equal(requestAndReply('nest_null').rep.value, null, 'NestJS sends null as a null value');
      const fail = requestAndReply('nest_fail').rep;
      assert.equal(hstr(fail, 'kafka_nest-err'), '{"status":"error","message":"nest_fail refused 13"}');
      assert.equal(fail.value, null);
    });
  } finally {
    await Promise.race([
      Promise.allSettled([nest?.client.close(), nest?.app.close(), capture?.disconnect()]),
      sleep(10_000),
    ]);
  }
}

async function stopSwitchyard(): Promise<void> {
  if (!sy || sy.exitCode !== null || sy.signalCode !== null) return;
  sy.kill('SIGTERM');
  const code = await Promise.race([syExit!, sleep(STOP_TIMEOUT_MS).then(() => 'timeout' as const)]);
  await check('switchyard exits 0 on SIGTERM', () => {
    assert.equal(code, 0, `exit: ${code}\n${syLogTail(20)}`);
  });
  if (code === 'timeout') sy.kill('SIGKILL');
}

process.on('exit', () => {
  if (sy && sy.exitCode === null && sy.signalCode === null) sy.kill('SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    log(`${sig}: stopping`);
    process.exit(1);
  });
}
const deadline = setTimeout(() => {
  log(`FAIL: the test did not finish within ${DEADLINE_MS / 1000} s\n${syLogTail()}`);
  process.exit(1);
}, DEADLINE_MS);

main()
  .catch((e) => {
    results.push({ name: 'setup', ok: false, detail: e?.stack ?? String(e) });
    log(`FAIL setup: ${e?.stack ?? e}`);
  })
  .then(stopSwitchyard)
  .then(() => {
    clearTimeout(deadline);
    const failed = results.filter((r) => !r.ok);
    if (failed.length > 0 || VERBOSE) {
      log(`switchyard log (tail):\n${syLogTail(failed.length ? 60 : 20)}`);
    }
    if (dataDir && !DATA_DIR && !process.env.INTEROP_KEEP) fs.rmSync(dataDir, { recursive: true, force: true });
    log(`${results.length - failed.length} passed, ${failed.length} failed${failed.length ? ': ' + failed.map((f) => f.name).join('; ') : ''}`);
    process.exit(failed.length ? 1 : 0);
  });
