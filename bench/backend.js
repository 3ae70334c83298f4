// The bench's fast TF-Serving-compatible backend: gRPC over Node's built-in HTTP/2 (h2c).
//
// Python's grpc.aio answers ~2,500 calls/s on one core here, about what a Python gateway in
// front of it needs, so on 2 cores a Python backend would be measured as much as the gateway.
// This one reads the few protobuf fields half_plus_two needs by hand and answers
// tensorflow.serving.PredictionService/Predict with y = 0.5x + 2 computed on every request;
// GetModelMetadata and ModelService/GetModelStatus answer bytes that bench/messages.py encodes
// (passed in base64). Run by bench/procs.py:
//   node backend.js PORT METADATA_B64 STATUS_B64      (prints "port N" once listening)
"use strict";
const http2 = require("node:http2");

const [port, metadataB64, statusB64] = process.argv.slice(2);
const MODEL = "half_plus_two";
const SIGNATURE = "serving_default";
const DT_FLOAT = 1;
// PredictResponse.model_spec (field 2): name, version 1, signature_name.
const SPEC_FIELD = lengthDelimited(2, Buffer.concat([lengthDelimited(1, Buffer.from(MODEL)),
  lengthDelimited(2, varintField(1, 1)), lengthDelimited(3, Buffer.from(SIGNATURE))]));
const constant = {
  "/tensorflow.serving.PredictionService/GetModelMetadata": frame(Buffer.from(metadataB64, "base64")),
  "/tensorflow.serving.ModelService/GetModelStatus": frame(Buffer.from(statusB64, "base64")),
};

// -- protobuf wire format: just what PredictRequest/PredictResponse need ----------------------
function readVarint(buf, pos) {
  let value = 0;
  let shift = 1;
  for (;;) {
    const byte = buf[pos++];
    value += (byte & 0x7f) * shift;
    if (byte < 0x80) return [value, pos];
    shift *= 128;
  }
}

// Calls visit(field, wireType, value) for each field; value is a Buffer for length-delimited
// fields and a number for varints.
function fields(buf, visit) {
  let pos = 0;
  while (pos < buf.length) {
    let key;
    [key, pos] = readVarint(buf, pos);
    const field = Math.floor(key / 8);
    const type = key & 7;
    if (type === 0) {
      let value;
      [value, pos] = readVarint(buf, pos);
      visit(field, type, value);
    } else if (type === 2) {
      let len;
      [len, pos] = readVarint(buf, pos);
      visit(field, type, buf.subarray(pos, pos + len));
      pos += len;
    } else if (type === 5) {
      visit(field, type, buf.subarray(pos, pos + 4));
      pos += 4;
    } else if (type === 1) {
      visit(field, type, buf.subarray(pos, pos + 8));
      pos += 8;
    } else {
      throw new Error(`wire type ${type}`);
    }
  }
}

function varint(value) {
  const out = [];
  while (value >= 0x80) {
    out.push((value % 128) | 0x80);
    value = Math.floor(value / 128);
  }
  out.push(value);
  return Buffer.from(out);
}

function lengthDelimited(field, payload) {
  return Buffer.concat([varint(field * 8 + 2), varint(payload.length), payload]);
}

function varintField(field, value) {
  return Buffer.concat([varint(field * 8), varint(value)]);
}

// -- Predict -------------------------------------------------------------------------------
class Refusal extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

// The framed answer (5-byte gRPC prefix + PredictResponse) in one buffer: y is computed straight
// into its place in the message, so a large answer is written once and never copied in JS.
function predict(request) {
  let model = "";
  let x = null;
  let shape = null;
  fields(request, (field, type, value) => {
    if (field === 1 && type === 2) {
      fields(value, (f, t, v) => {
        if (f === 1 && t === 2) model = v.toString("utf8");
      });
    } else if (field === 2 && type === 2) {
      let key = "";
      let tensor = null;
      fields(value, (f, t, v) => {
        if (f === 1) key = v.toString("utf8");
        else if (f === 2) tensor = v;
      });
      if (key === "x") [x, shape] = [floatsOf(tensor), shapeOf(tensor)];
    }
  });
  if (model !== MODEL) throw new Refusal(5, `Servable not found for request: Latest(${model})`);
  if (x === null) throw new Refusal(3, "expects one float input 'x'");
  const n = x.length;
  // y has x's shape (N rows in, N rows out, as a batch of requests joined along the first
  // dimension needs); an x sent without a shape gets [n].
  const dims = shape === null ? lengthDelimited(2, varintField(1, n)) : shape;
  const tensorHead = Buffer.concat([varintField(1, DT_FLOAT), lengthDelimited(2, dims),
    varint(4 * 8 + 2), varint(4 * n)]); // ... tensor_content follows
  const entryHead = Buffer.concat([lengthDelimited(1, Buffer.from("y")), varint(2 * 8 + 2),
    varint(tensorHead.length + 4 * n)]);
  const head = Buffer.concat([varint(1 * 8 + 2), varint(entryHead.length + tensorHead.length + 4 * n),
    entryHead, tensorHead]);
  const length = head.length + 4 * n + SPEC_FIELD.length;
  // Float32Array needs 4-byte alignment (and is little-endian on the machines this runs on).
  const shift = (4 - ((5 + head.length) % 4)) % 4;
  const memory = new ArrayBuffer(shift + 5 + length);
  const out = Buffer.from(memory, shift, 5 + length);
  out[0] = 0;
  out.writeUInt32BE(length, 1);
  head.copy(out, 5);
  const y = new Float32Array(memory, shift + 5 + head.length, n);
  for (let i = 0; i < n; i++) y[i] = x[i] * 0.5 + 2;
  SPEC_FIELD.copy(out, 5 + head.length + 4 * n);
  return out;
}

// A float32 TensorProto's values, from tensor_content or float_val (packed or not).
function floatsOf(tensor) {
  let dtype = 0;
  let content = null;
  const listed = [];
  fields(tensor || Buffer.alloc(0), (f, t, v) => {
    if (f === 1) dtype = v;
    else if (f === 4) content = v;
    else if (f === 5 && t === 2) for (let i = 0; i < v.length; i += 4) listed.push(v.readFloatLE(i));
    else if (f === 5 && t === 5) listed.push(v.readFloatLE(0));
  });
  if (dtype !== DT_FLOAT) return null;
  if (content === null) return Float32Array.from(listed);
  if (content.byteOffset % 4 === 0) {
    return new Float32Array(content.buffer, content.byteOffset, content.length / 4);
  }
  const aligned = new Uint8Array(content.length);
  aligned.set(content);
  return new Float32Array(aligned.buffer);
}

// The TensorShapeProto's bytes (its dim fields, as sent), or null when the tensor has none.
function shapeOf(tensor) {
  let shape = null;
  fields(tensor || Buffer.alloc(0), (f, t, v) => {
    if (f === 2 && t === 2) shape = v;
  });
  return shape;
}

// -- gRPC over HTTP/2 ----------------------------------------------------------------------
function frame(message) {
  const header = Buffer.alloc(5);
  header.writeUInt32BE(message.length, 1);
  return Buffer.concat([header, message]);
}

function answer(stream, framed) {
  stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
  stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
  stream.end(framed);
}

function refuse(stream, code, message) {
  stream.respond({ ":status": 200, "content-type": "application/grpc", "grpc-status": String(code),
    "grpc-message": encodeURIComponent(message) }, { endStream: true });
}

const server = http2.createServer({
  maxSessionMemory: 1024, // MB: 64 streams of 600 KB must not be refused
  settings: { initialWindowSize: 16 * 1024 * 1024, maxFrameSize: 1 << 20, maxConcurrentStreams: 1000 },
});
server.on("session", (session) => {
  session.on("connect", () => session.setLocalWindowSize(1 << 30));
  session.on("error", () => {});
});
server.on("stream", (stream, headers) => {
  const path = headers[":path"];
  const chunks = [];
  stream.on("error", () => {});
  stream.on("data", (chunk) => chunks.push(chunk));
  stream.on("end", () => {
    // A caller that went away (h2load stopping with calls in flight) gets no answer.
    if (stream.destroyed || stream.closed) return;
    try {
      handle(stream, path, chunks.length === 1 ? chunks[0] : Buffer.concat(chunks));
    } catch (err) {
      if (!stream.destroyed) refuse(stream, 13, String(err));
    }
  });
});

function handle(stream, path, body) {
  if (body.length < 5 || body[0] !== 0) return refuse(stream, 13, "expects one uncompressed message");
  const request = body.subarray(5, 5 + body.readUInt32BE(1));
  if (path in constant) return answer(stream, constant[path]);
  if (path !== "/tensorflow.serving.PredictionService/Predict") {
    return refuse(stream, 12, `Method not found: ${path}`);
  }
  try {
    answer(stream, predict(request));
  } catch (err) {
    if (!(err instanceof Refusal)) throw err;
    refuse(stream, err.code, err.message);
  }
}
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => process.exit(0));
server.listen(Number(port), "127.0.0.1", () => console.log(`port ${server.address().port}`));
