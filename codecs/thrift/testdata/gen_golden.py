#!/usr/bin/python3
"""Writes the golden frames of the Thrift codec's tests.

Every frame is produced by Debian's python3-thrift (0.17) with its own transports and
protocols, from bindings that Debian's thrift compiler generates from calc.thrift: requests
come from the generated client, replies from the generated processor answering those
requests. Nothing here encodes Thrift by hand, so the codec is tested against a real
third-party encoder.

Run it from anywhere with Debian's interpreter (the python3 first on PATH may not see the
thrift module):

    /usr/bin/python3 codecs/thrift/testdata/gen_golden.py

It rewrites testdata/golden/*.bin and testdata/golden/manifest.json, which says what each
frame must decode to. The output is deterministic.
"""

import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile

from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.protocol.TCompactProtocol import TCompactProtocol
from thrift.protocol.THeaderProtocol import THeaderProtocol
from thrift.protocol.TMultiplexedProtocol import TMultiplexedProtocol
from thrift.TMultiplexedProcessor import TMultiplexedProcessor
from thrift.Thrift import TApplicationException
from thrift.transport.THeaderTransport import (
    THeaderClientType,
    THeaderSubprotocolID,
    THeaderTransformID,
)
from thrift.transport.TTransport import (
    TBufferedTransport,
    TFramedTransport,
    TMemoryBuffer,
    TTransportBase,
)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "golden")
SERVICE = "Calculator"

# The processor logs the handler's unexpected exception; that is the point of the sample.
logging.disable(logging.CRITICAL)


def generate_bindings():
    gen = tempfile.mkdtemp(prefix="meltemi-golden-")
    subprocess.run(["thrift", "--gen", "py", "-out", gen, os.path.join(HERE, "calc.thrift")],
                   check=True, stderr=subprocess.DEVNULL)
    sys.path.insert(0, gen)
    return gen


class Duplex(TTransportBase):
    """Reads from one buffer and writes to another: a THeaderProtocol server reads the request
    and writes the reply through the same transport, as on a socket."""

    def __init__(self, data):
        self.rbuf = io.BytesIO(data)
        self.wbuf = io.BytesIO()

    def isOpen(self):
        return True

    def read(self, sz):
        return self.rbuf.read(sz)

    def write(self, buf):
        self.wbuf.write(buf)

    def flush(self):
        pass


class NameFixBinaryProtocol(TBinaryProtocol):
    """TBinaryProtocol whose reader returns a non-strict message name as str, as it does for a
    strict one (python3-thrift 0.17 returns bytes there, so its own processor cannot find the
    method). Only reading is touched: every byte written comes from TBinaryProtocol."""

    def readMessageBegin(self):
        name, mtype, seqid = TBinaryProtocol.readMessageBegin(self)
        if isinstance(name, bytes):
            name = name.decode("utf-8")
        return name, mtype, seqid


class Mode:
    def __init__(self, transport, protocol, strict=True, zlib=False):
        self.transport = transport  # framed, unframed, header
        self.protocol = protocol    # binary, compact
        self.strict = strict
        self.zlib = zlib

    @property
    def stream(self):
        return "%s/%s" % (self.transport, self.protocol)

    @property
    def tag(self):
        t = "%s_%s" % (self.transport, self.protocol)
        if not self.strict:
            t += "_nonstrict"
        if self.zlib:
            t += "_zlib"
        return t

    def _proto(self, trans):
        if self.protocol == "binary":
            return NameFixBinaryProtocol(trans, strictRead=False, strictWrite=self.strict)
        return TCompactProtocol(trans)

    def _header(self, trans):
        sub = THeaderSubprotocolID.BINARY if self.protocol == "binary" else THeaderSubprotocolID.COMPACT
        p = THeaderProtocol(trans, (THeaderClientType.HEADERS,), sub)
        if self.zlib:
            p.add_transform(THeaderTransformID.ZLIB)
        return p

    def client_bytes(self, send, mux, headers):
        """Runs send(client) on a client of this mode writing into memory; returns the bytes."""
        import meltemi_golden.Calculator as calc
        if self.transport == "header":
            sink = Duplex(b"")
            proto = self._header(sink)
            for k, v in headers.items():
                proto.set_header(k.encode(), v.encode())
            out = TMultiplexedProtocol(proto, SERVICE) if mux else proto
            send(calc.Client(proto, out))
            return sink.wbuf.getvalue()
        mem = TMemoryBuffer()
        trans = TFramedTransport(mem) if self.transport == "framed" else TBufferedTransport(mem)
        proto = self._proto(trans)
        out = TMultiplexedProtocol(proto, SERVICE) if mux else proto
        send(calc.Client(proto, out))
        return mem.getvalue()

    def server_bytes(self, request, mux, headers):
        """Feeds request to the generated processor; returns the reply it writes."""
        import meltemi_golden.Calculator as calc
        processor = calc.Processor(Handler())
        if mux:
            m = TMultiplexedProcessor()
            m.registerProcessor(SERVICE, processor)
            processor = m
        if self.transport == "header":
            duplex = Duplex(request)
            proto = self._header(duplex)
            for k, v in headers.items():
                proto.set_header(k.encode(), v.encode())
            processor.process(proto, proto)
            return duplex.wbuf.getvalue()
        wrap = TFramedTransport if self.transport == "framed" else TBufferedTransport
        out = TMemoryBuffer()
        otrans = wrap(out)
        processor.process(self._proto(wrap(TMemoryBuffer(request))), self._proto(otrans))
        return out.getvalue()


class Handler:
    def ping(self):
        pass

    def calculate(self, logid, w):
        from meltemi_golden.ttypes import CalcError
        if logid == 2:
            raise CalcError(code=42, why="division by zero")
        if logid == 3:
            raise RuntimeError("boom")
        return w.num1 + w.num2

    def zip(self, note):
        pass

    def echo(self, s):
        return s


def work(big=False):
    """A Work value that makes a calculate call of about 1 KiB in the binary protocol, or, when
    big, of about 1 KiB in the compact protocol."""
    from meltemi_golden.ttypes import Inner, Op, Work
    more = {}
    if big:
        more = {"extra%d" % i: Inner(name="extra inner value number %d" % i, ids=list(range(i, i + 9)),
                                     weights={"k%d" % j: j * 1.5 for j in range(4)})
                for i in range(5)}
    leaf = Inner(name="leaf", ids=[7, -7, 1 << 40], weights={"w": 0.25})
    return Work(
        num1=40, num2=2, op=Op.ADD, comment="the answer to everything, computed the long way",
        flag=True, b=-3, s=-1200, l=-(1 << 50), d=3.5, blob=bytes(range(48)),
        tags=["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"],
        nums={1, 2, 3, 500, -70000},
        inners={
            "first": Inner(name="first", ids=[1, 2, 3, 4, 5, 6], weights={"a": 1.0, "b": 2.5},
                           child=leaf),
            "second": Inner(name="second", ids=[], weights={}),
            "third": Inner(name="third of many inner values", ids=list(range(20)),
                           weights={"x%d" % i: i / 4 for i in range(6)}),
            **more,
        },
        matrix=[[1, 2, 3], [], [4, 5, 6, 7, 8, 9, 10, 11], [-1] * 12],
        bools=[True, False, True, True, False],
        mlist={1: ["one", "uno"], 2: [], 3: ["three", "tres", "drei", "trois"]},
        blobs={b"\x00\x01", b"\xff" * 10, b"meltemi"},
        far=-9,
    )


CALL_HEADERS = {"x-request-id": "5b1c-77aa", "user": "alice", "x-route": "canary"}
REPLY_HEADERS = {"server": "python3-thrift"}


def main():
    if os.environ.get("PYTHONHASHSEED") != "0":
        # Sets of strings iterate in hash order: fix the hash seed so the output is stable.
        env = dict(os.environ, PYTHONHASHSEED="0")
        os.execve(sys.executable, [sys.executable] + sys.argv, env)
    gen = generate_bindings()
    try:
        samples = build()
    finally:
        shutil.rmtree(gen)
    if os.path.isdir(OUT):
        for name in os.listdir(OUT):
            os.remove(os.path.join(OUT, name))
    else:
        os.makedirs(OUT)
    manifest = []
    for s in samples:
        with open(os.path.join(OUT, s["file"]), "wb") as f:
            f.write(s.pop("bytes"))
        manifest.append(s)
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")


def build():
    modes = [
        Mode("framed", "binary"), Mode("framed", "binary", strict=False), Mode("framed", "compact"),
        Mode("unframed", "binary"), Mode("unframed", "binary", strict=False),
        Mode("unframed", "compact"),
        Mode("header", "binary"), Mode("header", "compact"),
        Mode("header", "binary", zlib=True), Mode("header", "compact", zlib=True),
    ]
    samples = []
    for m in modes:
        samples += build_mode(m)
    return samples


def build_mode(m):
    call_headers = dict(CALL_HEADERS) if m.transport == "header" else {}
    reply_headers = dict(REPLY_HEADERS) if m.transport == "header" else {}
    if m.zlib:
        # Small messages only: with zlib, the codec bounds the inflated payload by the frame
        # size limit, and the conformance kit sets that limit to the compressed frame's size.
        call_headers = {"x-zlib": "1"}
    out = []

    def add(name, data, kind, seqid, method, mtype, service=None, headers=None):
        attrs = {"method": method, "message_type": mtype}
        absent = []
        if service:
            attrs["service"] = service
        else:
            absent.append("service")
        for k, v in (headers or {}).items():
            attrs[k] = v
        if m.transport != "header":
            absent.append("x-request-id")
        out.append({"file": "%s_%s.bin" % (m.tag, name), "bytes": data, "stream": m.stream,
                    "kind": kind, "id": seqid & 0xFFFFFFFF, "attrs": attrs, "absent": absent,
                    "headers": list((headers or {}).items())})

    def call(mux, seqid, send, headers):
        def run(client):
            client._seqid = seqid
            send(client)
        return m.client_bytes(run, mux, headers)

    # Seqids: 1 is a one-byte compact varint that grows when the codec rewrites it, 0x7fff0001
    # is as long as the conformance kit's new id, and the binary protocol gets a negative one.
    neg = -5 if m.protocol == "binary" else 77
    if m.zlib:
        req = call(True, 9, lambda c: c.send_echo("hello through zlib"), call_headers)
        add("call_mux_echo", req, "request", 9, "echo", "call", SERVICE, call_headers)
        add("reply_echo", m.server_bytes(req, True, reply_headers), "response", 9, "echo", "reply",
            headers=reply_headers)
        req = call(False, 0x7FFF0001, lambda c: c.send_zip("zip it"), call_headers)
        add("oneway_zip", req, "oneway", 0x7FFF0001, "zip", "oneway", headers=call_headers)
        return out

    w = work()
    req = call(False, 1, lambda c: c.send_calculate(1, w), call_headers)
    add("call_calculate", req, "request", 1, "calculate", "call", headers=call_headers)
    add("reply_calculate", m.server_bytes(req, False, reply_headers), "response", 1, "calculate",
        "reply", headers=reply_headers)

    if m.stream == "header/compact":
        # The benchmark's THeader compact request: about 1 KiB like the framed binary one.
        req = call(False, 4, lambda c: c.send_calculate(1, work(big=True)), call_headers)
        add("call_calculate_1k", req, "request", 4, "calculate", "call", headers=call_headers)

    req = call(True, 300, lambda c: c.send_echo("multiplexed hello"), call_headers)
    add("call_mux_echo", req, "request", 300, "echo", "call", SERVICE, call_headers)
    # A multiplexed server answers with the bare method name.
    add("reply_mux_echo", m.server_bytes(req, True, reply_headers), "response", 300, "echo",
        "reply", headers=reply_headers)

    req = call(False, 0x7FFF0001, lambda c: c.send_zip("fire and forget"), call_headers)
    add("oneway_zip", req, "oneway", 0x7FFF0001, "zip", "oneway", headers=call_headers)
    req = call(True, 12, lambda c: c.send_zip("multiplexed oneway"), call_headers)
    add("oneway_mux_zip", req, "oneway", 12, "zip", "oneway", SERVICE, call_headers)

    req = call(False, 2, lambda c: c.send_ping(), call_headers)
    add("call_ping", req, "request", 2, "ping", "call", headers=call_headers)
    add("reply_ping_void", m.server_bytes(req, False, {}), "response", 2, "ping", "reply")

    req = call(False, 3, lambda c: c.send_calculate(2, w), call_headers)
    add("reply_declared_exception", m.server_bytes(req, False, reply_headers), "error_response", 3,
        "calculate", "reply", headers=reply_headers)

    req = call(False, neg, lambda c: c.send_calculate(3, w), call_headers)
    add("exception_internal", m.server_bytes(req, False, reply_headers), "error_response", neg,
        "calculate", "exception", headers=reply_headers)
    return out


if __name__ == "__main__":
    main()
