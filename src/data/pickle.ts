/**
 * A minimal Python unpickler, enough for InsightFace's verification `.bin` files
 * (`pickle.dump((bins, issame_list))`): protocols 0-5 without out-of-band buffers; bytes, py2 `str`
 * (returned as bytes), unicode, ints, floats, bools, None, tuples, lists, dicts, sets, and numpy
 * arrays (`numpy.core.multiarray._reconstruct` + BUILD, as `cv2.imencode` outputs pickle to).
 * No code is executed: globals other than the few numpy/codecs constructors become inert stubs.
 */

export class PickleError extends Error {
  override name = "PickleError";
}

/** What a numpy ndarray unpickles to. `data` is the raw buffer (C order). */
export interface NumpyArray {
  __numpy__: true;
  shape: number[];
  dtype: string;
  data: Uint8Array;
}

interface Stub {
  __global__: string;
  args?: unknown[];
  state?: unknown;
}

const MARK = Symbol("mark");

export function isNumpyArray(v: unknown): v is NumpyArray {
  return typeof v === "object" && v !== null && (v as NumpyArray).__numpy__ === true;
}

/** Bytes of a pickled image entry: bytes, py2 str (as bytes) or a uint8 numpy array. */
export function asBytes(v: unknown): Uint8Array | undefined {
  if (v instanceof Uint8Array) return v;
  if (isNumpyArray(v)) return v.data;
  return undefined;
}

function latin1(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
  return out;
}

/** Unpickles `buf`. `where` names the file in error messages. */
export function unpickle(buf: Uint8Array, where = "<buffer>"): unknown {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const dec = new TextDecoder("utf-8");
  let pos = 0;
  const stack: unknown[] = [];
  const memo = new Map<number, unknown>();
  const fail = (msg: string, at = pos): never => {
    throw new PickleError(`${where}: ${msg} at byte offset ${at}`);
  };
  const need = (n: number) => {
    if (pos + n > buf.length) fail(`truncated pickle (needs ${n} more bytes, file has ${buf.length - pos})`);
  };
  const u8 = () => {
    need(1);
    return buf[pos++];
  };
  const u16 = () => {
    need(2);
    const v = view.getUint16(pos, true);
    pos += 2;
    return v;
  };
  const u32 = () => {
    need(4);
    const v = view.getUint32(pos, true);
    pos += 4;
    return v;
  };
  const i32 = () => {
    need(4);
    const v = view.getInt32(pos, true);
    pos += 4;
    return v;
  };
  const u64 = () => {
    need(8);
    const v = Number(view.getBigUint64(pos, true));
    pos += 8;
    return v;
  };
  const bytes = (n: number) => {
    need(n);
    const v = buf.slice(pos, pos + n);
    pos += n;
    return v;
  };
  const line = () => {
    const end = buf.indexOf(0x0a, pos);
    if (end < 0) fail("truncated pickle (unterminated text argument)");
    const s = dec.decode(buf.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const popMark = (): unknown[] => {
    for (let k = stack.length - 1; k >= 0; k--) {
      if (stack[k] === MARK) {
        const items = stack.slice(k + 1);
        stack.length = k;
        return items;
      }
    }
    return fail("MARK not found");
  };
  const pop = () => {
    if (stack.length === 0) fail("stack underflow");
    return stack.pop();
  };
  const top = () => {
    if (stack.length === 0) fail("stack underflow");
    return stack[stack.length - 1];
  };
  const makeGlobal = (module: string, name: string): Stub => ({ __global__: `${module}.${name}` });
  const reduce = (fn: unknown, args: unknown[]): unknown => {
    const g = (fn as Stub)?.__global__;
    if (g === "_codecs.encode" && typeof args[0] === "string") return latin1(args[0]);
    if (g === "__builtin__.bytearray" || g === "builtins.bytearray") {
      // protocol <3: bytearray(str, 'latin-1'); protocol 3-4: bytearray(bytes)
      if (args[0] instanceof Uint8Array) return args[0];
      return typeof args[0] === "string" ? latin1(args[0]) : new Uint8Array(0);
    }
    if (g === "numpy.core.multiarray._reconstruct" || g === "numpy._core.multiarray._reconstruct") {
      return { __numpy__: true, shape: [], dtype: "", data: new Uint8Array(0) } satisfies NumpyArray;
    }
    if (g === "numpy.core.numeric._frombuffer" || g === "numpy._core.numeric._frombuffer") {
      // protocol 5 in-band: _frombuffer(buffer, dtype, shape, order)
      const [data, dtype, shape] = args as [unknown, Stub, number[]];
      if (!(data instanceof Uint8Array)) fail("numpy _frombuffer without a byte buffer");
      return {
        __numpy__: true,
        shape: (shape ?? []).map(Number),
        dtype: String(dtype?.args?.[0] ?? ""),
        data: data as Uint8Array,
      } satisfies NumpyArray;
    }
    if (g === "numpy.dtype") return { __global__: "numpy.dtype", args } satisfies Stub;
    return { __global__: g ?? "?", args } satisfies Stub;
  };
  const build = (obj: unknown, state: unknown) => {
    if (isNumpyArray(obj) && Array.isArray(state)) {
      // ndarray.__setstate__: (version, shape, dtype, is_fortran, rawdata)
      const [, shape, dtype, , raw] = state as [number, number[], Stub, boolean, unknown];
      obj.shape = Array.isArray(shape) ? shape.map(Number) : [];
      obj.dtype = String((dtype?.args as unknown[] | undefined)?.[0] ?? "");
      if (raw instanceof Uint8Array) obj.data = raw;
      else if (typeof raw === "string") obj.data = latin1(raw);
      else fail("numpy array whose data is not a byte string (object arrays are not supported)");
    } else if (obj && typeof obj === "object") {
      (obj as Stub).state = state;
    }
  };

  for (;;) {
    const at = pos;
    if (pos >= buf.length) fail("truncated pickle (no STOP opcode)");
    const op = buf[pos++];
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) fail("unsupported pickle protocol", at);
        break;
      case 0x95: // FRAME
        u64();
        break;
      case 0x2e: // STOP
        if (stack.length !== 1) fail(`malformed pickle (stack has ${stack.length} items at STOP)`, at);
        return stack[0];
      case 0x28: // MARK
        stack.push(MARK);
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4a: // BININT
        stack.push(i32());
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x49: {
        // INT (text; "I01" / "I00" are bools in protocols 0-1)
        const s = line();
        stack.push(s === "01" ? true : s === "00" ? false : Number.parseInt(s, 10));
        break;
      }
      case 0x4c: // LONG (text)
        stack.push(Number.parseInt(line().replace(/L$/, ""), 10));
        break;
      case 0x8a: {
        // LONG1: little-endian two's complement
        const n = u8();
        const b = bytes(n);
        let v = 0n;
        for (let k = n - 1; k >= 0; k--) v = (v << 8n) | BigInt(b[k]);
        if (n > 0 && b[n - 1] & 0x80) v -= 1n << BigInt(8 * n);
        stack.push(Number(v));
        break;
      }
      case 0x47: {
        // BINFLOAT (big-endian double)
        need(8);
        stack.push(view.getFloat64(pos, false));
        pos += 8;
        break;
      }
      case 0x46: // FLOAT (text)
        stack.push(Number.parseFloat(line()));
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(bytes(u8()));
        break;
      case 0x42: // BINBYTES
        stack.push(bytes(u32()));
        break;
      case 0x8e: // BINBYTES8
        stack.push(bytes(u64()));
        break;
      case 0x96: // BYTEARRAY8
        stack.push(bytes(u64()));
        break;
      case 0x55: // SHORT_BINSTRING (py2 str): kept as bytes
        stack.push(bytes(u8()));
        break;
      case 0x54: // BINSTRING
        stack.push(bytes(i32()));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(dec.decode(bytes(u8())));
        break;
      case 0x58: // BINUNICODE
        stack.push(dec.decode(bytes(u32())));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(dec.decode(bytes(u64())));
        break;
      case 0x56: {
        // UNICODE: raw-unicode-escape (latin-1 bytes, with \uXXXX and \UXXXXXXXX escapes)
        const end = buf.indexOf(0x0a, pos);
        if (end < 0) fail("truncated pickle (unterminated text argument)");
        let raw = "";
        for (let k = pos; k < end; k++) raw += String.fromCharCode(buf[k]);
        pos = end + 1;
        stack.push(
          raw.replace(/\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g, (_, a, b) =>
            String.fromCodePoint(Number.parseInt(a ?? b, 16)),
          ),
        );
        break;
      }
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push([]);
        break;
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x8f: // EMPTY_SET
        stack.push(new Set());
        break;
      case 0x6c: // LIST
      case 0x74: // TUPLE
        stack.push(popMark());
        break;
      case 0x91: // FROZENSET
        stack.push(new Set(popMark()));
        break;
      case 0x85: // TUPLE1
        stack.push([pop()]);
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        const a = pop();
        stack.push([a, b]);
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        const a = pop();
        stack.push([a, b, c]);
        break;
      }
      case 0x61: {
        // APPEND
        const v = pop();
        const l = top();
        if (!Array.isArray(l)) fail("APPEND to a non-list", at);
        (l as unknown[]).push(v);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        const l = top();
        if (!Array.isArray(l)) fail("APPENDS to a non-list", at);
        for (const v of items) (l as unknown[]).push(v);
        break;
      }
      case 0x90: {
        // ADDITEMS
        const items = popMark();
        const s = top() as Set<unknown>;
        for (const v of items) s.add(v);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        (top() as Map<unknown, unknown>).set(k, v);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        const d = top() as Map<unknown, unknown>;
        for (let k = 0; k + 1 < items.length; k += 2) d.set(items[k], items[k + 1]);
        break;
      }
      case 0x64: {
        // DICT
        const items = popMark();
        const d = new Map<unknown, unknown>();
        for (let k = 0; k + 1 < items.length; k += 2) d.set(items[k], items[k + 1]);
        stack.push(d);
        break;
      }
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x70: // PUT (text)
        memo.set(Number.parseInt(line(), 10), top());
        break;
      case 0x68: {
        // BINGET
        const k = u8();
        if (!memo.has(k)) fail(`memo key ${k} missing`, at);
        stack.push(memo.get(k));
        break;
      }
      case 0x6a: {
        // LONG_BINGET
        const k = u32();
        if (!memo.has(k)) fail(`memo key ${k} missing`, at);
        stack.push(memo.get(k));
        break;
      }
      case 0x67: {
        // GET (text)
        const k = Number.parseInt(line(), 10);
        if (!memo.has(k)) fail(`memo key ${k} missing`, at);
        stack.push(memo.get(k));
        break;
      }
      case 0x63: {
        // GLOBAL "module\nname\n"
        const module = line();
        const name = line();
        stack.push(makeGlobal(module, name));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        stack.push(makeGlobal(String(module), String(name)));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        const fn = pop();
        stack.push(reduce(fn, Array.isArray(args) ? args : []));
        break;
      }
      case 0x81: {
        // NEWOBJ
        const args = pop();
        const cls = pop();
        stack.push(reduce(cls, Array.isArray(args) ? args : []));
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop();
        build(top(), state);
        break;
      }
      case 0x30: // POP
        pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      default:
        fail(`unsupported pickle opcode 0x${op.toString(16).padStart(2, "0")}`, at);
    }
  }
}
