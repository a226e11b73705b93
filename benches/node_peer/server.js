// The Node peer of the benchmark (`cargo bench --bench runner_dispatch -- 2`): what a
// plain Node 20 custom handler would do for a `github-webhook` invocation, so the harness
// can compare runner-dispatch's envelope route with it under the same load.
//
// For each `POST /github-webhook` it does the same work as runner-dispatch's envelope
// route for an accepted delivery: parse the Functions host envelope, take `Data.req`'s
// headers (names matched case-insensitively, array values joined with ",") and its body
// string, verify `X-Hub-Signature-256` (HMAC-SHA256, compared with
// crypto.timingSafeEqual), parse the webhook JSON, check it is a `workflow_job` `queued`
// delivery of an allowed owner, choose a pool, and answer the host's reply envelope
// (`Outputs.res` with the status for GitHub, `Outputs.runnerRequest` with the queue
// message, `Logs`, `ReturnValue`).
//
// Deliberately simpler than runner-dispatch, so the comparison flatters the peer, not us:
// pool choice is a plain label-subset match (every job label, lowercased, among the
// pool's labels; the first fitting pool with the fewest labels wins; no repository
// filters), the pools and allowed owners are those of runners.example.toml written out
// below, and there is no name validation, structured logging or content-type check.
//
// No dependencies: `node benches/node_peer/server.js [port]` (or PORT=<port>), with the
// secret in GITHUB_WEBHOOK_SECRET. `GET /` answers 200 (the harness waits for it).
'use strict';

const http = require('node:http');
const crypto = require('node:crypto');

const port = Number(process.argv[2] || process.env.PORT || process.env.FUNCTIONS_CUSTOMHANDLER_PORT);
const secret = Buffer.from(process.env.GITHUB_WEBHOOK_SECRET || '', 'utf8');
const allowedOwners = new Set(['octo-org', 'octocoders']);
const namePrefix = 'ghr';
const pools = [
  { name: 'linux-aci', labels: ['self-hosted', 'linux', 'x64', 'aci'] },
  { name: 'windows-batch', labels: ['self-hosted', 'windows', 'x64'] },
];

if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node server.js <port> (or PORT=<port>)');
  process.exit(2);
}

/** Header lookup ignoring case; the host sends each value as an array of strings. */
function header(headers, name) {
  for (const key of Object.keys(headers)) {
    if (key.toLowerCase() === name) {
      const value = headers[key];
      if (typeof value === 'string') return value;
      if (Array.isArray(value)) return value.filter((v) => typeof v === 'string').join(',');
      return undefined;
    }
  }
  return undefined;
}

function signatureValid(given, body) {
  if (typeof given !== 'string') return false;
  const hex = given.trim();
  if (!hex.startsWith('sha256=') || hex.length !== 7 + 64 || !/^[0-9a-fA-F]{64}$/.test(hex.slice(7))) return false;
  const expected = crypto.createHmac('sha256', secret).update(body).digest();
  return crypto.timingSafeEqual(expected, Buffer.from(hex.slice(7), 'hex'));
}

function choosePool(labels) {
  const job = [...new Set(labels.map((l) => String(l).trim().toLowerCase()).filter((l) => l))];
  if (job.length === 0) return undefined;
  let best;
  for (const pool of pools) {
    if (job.every((l) => pool.labels.includes(l)) && (!best || pool.labels.length < best.labels.length)) best = pool;
  }
  return best;
}

/** The verdict for GitHub and, when accepted, the queue message. */
function decide(headers, body) {
  if (!signatureValid(header(headers, 'x-hub-signature-256'), body)) {
    return { status: 401, result: 'bad_signature', detail: 'X-Hub-Signature-256 does not match' };
  }
  const event = header(headers, 'x-github-event');
  if (event === 'ping') return { status: 200, result: 'pong', detail: 'webhook configured' };
  if (event !== 'workflow_job') return { status: 200, result: 'ignored', detail: `event ${event} is not handled` };
  let payload;
  try {
    payload = JSON.parse(body.toString('utf8'));
  } catch (e) {
    return { status: 400, result: 'bad_request', detail: 'body is not JSON' };
  }
  const job = payload && payload.workflow_job;
  const repo = payload && payload.repository;
  const owner = repo && repo.owner && repo.owner.login;
  if (!job || typeof job.id !== 'number' || !repo || typeof owner !== 'string' || typeof repo.full_name !== 'string') {
    return { status: 400, result: 'bad_request', detail: 'not a workflow_job payload' };
  }
  if (payload.action !== 'queued') return { status: 200, result: 'ignored', detail: `action ${payload.action} needs no runner` };
  if (!allowedOwners.has(owner.toLowerCase())) return { status: 403, result: 'forbidden', detail: `owner ${owner} is not allowed` };
  if (repo.private !== true) return { status: 403, result: 'forbidden', detail: 'public repositories are not allowed' };
  const labels = Array.isArray(job.labels) ? job.labels.filter((l) => typeof l === 'string') : [];
  const pool = choosePool(labels);
  if (!pool) return { status: 200, result: 'no_pool', detail: `no pool fits labels [${labels.join(', ')}]` };
  const runnerName = `${namePrefix}-${job.id}`;
  const message = {
    v: 1,
    kind: 'provision',
    job_id: job.id,
    run_id: job.run_id || 0,
    repository: repo.full_name,
    owner,
    installation_id: (payload.installation && payload.installation.id) || null,
    labels,
    pool: pool.name,
    runner_name: runnerName,
    delivery_id: header(headers, 'x-github-delivery') || '-',
    job_created_at: job.created_at || new Date().toISOString(),
  };
  return { status: 202, result: 'accepted', detail: `runner ${runnerName} requested in pool ${pool.name}`, message };
}

function hostReply(verdict) {
  const outputs = {
    res: {
      statusCode: String(verdict.status),
      body: JSON.stringify({ result: verdict.result, detail: verdict.detail }),
      headers: { 'Content-Type': 'application/json' },
    },
  };
  const logs = [];
  if (verdict.message) {
    const m = verdict.message;
    outputs.runnerRequest = m;
    logs.push(`runner requested: job ${m.job_id} pool ${m.pool} runner ${m.runner_name}`);
  }
  return { Outputs: outputs, Logs: logs, ReturnValue: null };
}

function handleInvocation(text) {
  let req;
  try {
    const envelope = JSON.parse(text);
    req = envelope && envelope.Data && envelope.Data.req;
  } catch (e) {
    req = undefined;
  }
  if (!req || typeof req !== 'object') {
    return hostReply({ status: 400, result: 'bad_request', detail: 'unreadable invocation' });
  }
  const headers = req.Headers && typeof req.Headers === 'object' ? req.Headers : {};
  const body = Buffer.from(typeof req.Body === 'string' ? req.Body : '', 'utf8');
  return hostReply(decide(headers, body));
}

const server = http.createServer((request, response) => {
  if (request.method === 'GET' && (request.url === '/' || request.url === '/healthz')) {
    response.writeHead(200, { 'Content-Type': 'text/plain' });
    response.end('ok');
    return;
  }
  if (request.method !== 'POST' || request.url !== '/github-webhook') {
    response.writeHead(404);
    response.end();
    return;
  }
  const chunks = [];
  request.on('data', (chunk) => chunks.push(chunk));
  request.on('end', () => {
    const reply = JSON.stringify(handleInvocation(Buffer.concat(chunks).toString('utf8')));
    response.writeHead(200, { 'Content-Type': 'application/json' });
    response.end(reply);
  });
});

server.listen(port, '127.0.0.1');
