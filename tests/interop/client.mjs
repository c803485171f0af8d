// A client of the BrainlessDB stored format (docs/format.md, format v2) in plain JavaScript.
//
// No dependencies: it reads a request as JSON on stdin and writes its answer as JSON on stdout; the test
// (tests/interop/test_javascript.py) does the NATS part (read the value and its revision, write the
// answer back with compare-and-set). Requests:
//
//   {"op": "roundtrip", "values": [text, ...]}
//       every stored value parsed and re-serialized (JSON.parse, JSON.stringify): what any JavaScript
//       client that reads a value and writes it back does to it;
//   {"op": "set", "value": text, "changes": {field: value, ...}, "node": name, "now_ms": ms}
//       the stored value with the fields changed as docs/format.md says: each changed field gets one new
//       stamp, newer than every stamp the value holds and the clock's now_ms (Date.now() if absent);
//   {"op": "expire", "value": text, "at": ms | null, "node": name, "now_ms": ms}
//       the stored value with its expiry (member e) set to the deadline ``at`` (null: none), newly stamped.

import { readFileSync } from "node:fs";

const MAX_MS = 2 ** 53 - 1;
const MAX_COUNTER = 65535;

/** A stamp of format v2, checked: [ms, counter, node]. */
export function readStamp(raw) {
  if (
    !Array.isArray(raw) || raw.length !== 3 ||
    !Number.isInteger(raw[0]) || raw[0] < 0 || raw[0] > MAX_MS ||
    !Number.isInteger(raw[1]) || raw[1] < 0 || raw[1] > MAX_COUNTER ||
    typeof raw[2] !== "string"
  ) {
    throw new Error(`malformed stamp ${JSON.stringify(raw)}`);
  }
  return raw;
}

/** Stamps compare as tuples: ms, then counter, then the node name by code point. */
export function compareStamps(a, b) {
  if (a[0] !== b[0]) return a[0] < b[0] ? -1 : 1;
  if (a[1] !== b[1]) return a[1] < b[1] ? -1 : 1;
  const left = [...a[2]].map((c) => c.codePointAt(0));
  const right = [...b[2]].map((c) => c.codePointAt(0));
  for (let i = 0; i < Math.min(left.length, right.length); i++) {
    if (left[i] !== right[i]) return left[i] < right[i] ? -1 : 1;
  }
  return left.length === right.length ? 0 : left.length < right.length ? -1 : 1;
}

/** A live entity version: {_v, d, s, t?}; throws for what this client must not rewrite. */
export function readEntity(text) {
  const envelope = JSON.parse(text);
  if (envelope === null || typeof envelope !== "object" || Array.isArray(envelope)) {
    throw new Error("not a JSON object");
  }
  if (!("_v" in envelope)) throw new Error("another client's plain object: no stamps to keep");
  if (envelope._v === 1) throw new Error("format v1: its stamps are above 2^53, JavaScript would round them");
  if (envelope._v !== 2) throw new Error(`unsupported format version ${JSON.stringify(envelope._v)}`);
  if ("x" in envelope) throw new Error("a deleted entity");
  if (envelope.d === null || typeof envelope.d !== "object" || Array.isArray(envelope.d)) {
    throw new Error("missing entity data ('d')");
  }
  readStamp(envelope.s);
  for (const stamp of Object.values(envelope.t ?? {})) readStamp(stamp);
  if (envelope.e != null) readStamp(envelope.e.s);
  return envelope;
}

/** The newest stamp of a version: its base stamp, one of its field stamps, or its expiry's. */
export function newestStamp(envelope) {
  let newest = envelope.s;
  const others = Object.values(envelope.t ?? {});
  if (envelope.e != null) others.push(envelope.e.s);
  for (const stamp of others) {
    if (compareStamps(stamp, newest) > 0) newest = stamp;
  }
  return newest;
}

/** The version expiring at ``at`` (Unix ms; null: never), set by a change stamped now. */
export function setExpiry(envelope, at, node, nowMs) {
  envelope.e = { at, s: nextStamp(newestStamp(envelope), node, nowMs) };
  return envelope;
}

/** A stamp of this client, newer than ``newest`` (a hybrid logical clock of one step). */
export function nextStamp(newest, node, nowMs) {
  let stamp = nowMs > newest[0] ? [nowMs, 0, node] : [newest[0], newest[1] + 1, node];
  if (stamp[1] > MAX_COUNTER) stamp = [stamp[0] + 1, 0, node];
  return stamp;
}

/** The version with ``changes`` made at one new stamp; every other field keeps its value and stamp. */
export function setFields(envelope, changes, node, nowMs) {
  const stamp = nextStamp(newestStamp(envelope), node, nowMs);
  const fieldStamps = { ...(envelope.t ?? {}) };
  for (const [name, value] of Object.entries(changes)) {
    envelope.d[name] = value;
    fieldStamps[name] = stamp;
  }
  envelope.t = fieldStamps;
  return envelope;
}

function main() {
  const request = JSON.parse(readFileSync(0, "utf8"));
  let answer;
  if (request.op === "roundtrip") {
    answer = request.values.map((text) => JSON.stringify(JSON.parse(text)));
  } else if (request.op === "expire") {
    const envelope = readEntity(request.value);
    answer = JSON.stringify(setExpiry(envelope, request.at, request.node, request.now_ms ?? Date.now()));
  } else if (request.op === "set") {
    const envelope = readEntity(request.value);
    answer = JSON.stringify(setFields(envelope, request.changes, request.node, request.now_ms ?? Date.now()));
  } else {
    throw new Error(`unknown op ${request.op}`);
  }
  process.stdout.write(JSON.stringify(answer));
}

main();
