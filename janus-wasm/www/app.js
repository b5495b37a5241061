// The SDK conformance scenario in the browser (janus-testkit's conformance module): each step
// prints one line, and the transcript is compared with the other bindings'. When the page was
// opened with ?report=1 (the headless-Chromium test), the transcript is also POSTed to /report.
import init, { JanusClient, selfTest, hexToBytes } from "./pkg/janus_wasm.js";

const MODULE = 3, SEQ = 1, HEARTBEAT_MS = 300;
const query = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
for (const id of ["ws", "token", "seed", "key"]) {
  if (query.has(id)) $(id).value = query.get(id);
}

const text = (bytes) => new TextDecoder().decode(bytes);
const bytes = (s) => new TextEncoder().encode(s);
const within = (ms, what, promise) =>
  Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error(`no ${what} in ${ms} ms`)), ms))]);

async function scenario(log) {
  log(`known answers: ${selfTest()} ok`);
  let heartbeat, push;
  const heartbeats = new Promise((resolve) => (heartbeat = resolve));
  const pushes = new Promise((resolve) => (push = resolve));
  const client = await JanusClient.connect($("ws").value, $("token").value, {
    clientCertSeed: hexToBytes($("seed").value),
    serverCertKey: hexToBytes($("key").value),
    heartbeatMs: HEARTBEAT_MS,
  });
  client.onHeartbeat(heartbeat);
  client.onPush(push);
  log("connected");

  const echo = await client.request(MODULE, SEQ, bytes("hello janus"));
  log(`echo: ${text(echo.data)}`);

  const beat = await within(5000, "heartbeat", heartbeats);
  if (beat.code !== 1) throw new Error(`heartbeat code ${beat.code}`);
  log("heartbeat: succeeded");

  const reply = await client.request(MODULE, SEQ, bytes("push-me"));
  log(`push reply: ${text(reply.data)}`);
  const pushed = await within(5000, "push", pushes);
  log(`push: module=${pushed.module} seq=${pushed.seq} data=${text(pushed.data)}`);

  try {
    await client.request(MODULE, SEQ, bytes("big:x"));
    throw new Error("the failing request succeeded");
  } catch (e) {
    if (e.kind !== "failed") throw e;
    log(`failure: module=${e.module} seq=${e.seq} message=${e.message}`);
  }
  client.close();
}

async function run() {
  const lines = [];
  const log = (line) => {
    lines.push(line);
    $("log").textContent = lines.join("\n");
  };
  let result = "done";
  try {
    await scenario(log);
  } catch (e) {
    result = `error: ${e.message ?? e}`;
    log(result);
  }
  $("result").textContent = result;
  if (query.get("report") === "1") {
    await fetch("/report", { method: "POST", body: lines.join("\n") });
  }
}

await init();
$("form").addEventListener("submit", (e) => {
  e.preventDefault();
  run();
});
if (query.has("token")) run();
