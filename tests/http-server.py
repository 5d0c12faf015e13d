#!/usr/bin/env python3
"""A threaded HTTP server for the fetch tests: serves a fixture folder on
127.0.0.1 (random port), honours Range, logs every request with start and end
times, and injects faults named in the URL path:

    /fault/SPEC/PATH     SPEC is comma-separated key=value pairs:
        truncate=N   send only N bytes of the body, then close (Content-Length stays whole)
        flip=N       invert the byte at file offset N
        reset=N      send N bytes, then reset the connection (RST)
        status=CODE  answer CODE (404, 500, ...) with no file
        stall=S      after `after` body bytes (default 0), send nothing for S seconds, then close
        after=N      see stall
        rate=B       throttle the body to B bytes per second
        times=N      the fault (not rate) applies only to the first N requests for this
                     exact URL path; later ones are served normally (default: always)
        id=X         ignored; makes a path (and its counter) unique

Example: /fault/status=500,times=1,id=a/file.bin answers 500 once, then the file.
The log (--log) has one JSON object per request: path, range, status, bytes,
start and end (time.time() floats), fault (whether a fault was applied).
"""
import argparse
import json
import os
import select
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

counters = {}
lock = threading.Lock()
log_file = None
root = "."


def log(entry):
    with lock:
        log_file.write(json.dumps(entry) + "\n")
        log_file.flush()


def parse_spec(spec):
    out = {}
    for part in spec.split(","):
        if not part:
            continue
        key, _, value = part.partition("=")
        out[key] = value
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: the JSON log is the record
        pass

    def do_GET(self):
        start = time.time()
        entry = {"path": self.path, "range": self.headers.get("Range"), "start": start,
                 "status": None, "bytes": 0, "fault": False}
        try:
            self.serve(entry)
        except (BrokenPipeError, ConnectionResetError):
            entry["error"] = "client went away"
        finally:
            entry["end"] = time.time()
            log(entry)

    def serve(self, entry):
        path = unquote(urlsplit(self.path).path)
        fault = {}
        if path.startswith("/fault/"):
            spec, _, rest = path[len("/fault/"):].partition("/")
            fault = parse_spec(spec)
            path = "/" + rest
            with lock:
                n = counters.get(self.path, 0)
                counters[self.path] = n + 1
            if "times" in fault and n >= int(fault["times"]):
                fault = {"rate": fault["rate"]} if "rate" in fault else {}
            entry["fault"] = any(k not in ("rate", "id", "times") for k in fault)

        if "status" in fault:
            body = ("injected status %s\n" % fault["status"]).encode()
            self.send_response(int(fault["status"]))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            entry["status"] = int(fault["status"])
            return

        full = os.path.realpath(os.path.join(root, path.lstrip("/")))
        if not full.startswith(os.path.realpath(root) + os.sep) or not os.path.isfile(full):
            body = b"not found\n"
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            entry["status"] = 404
            return
        with open(full, "rb") as f:
            data = bytearray(f.read())
        if "flip" in fault and int(fault["flip"]) < len(data):
            data[int(fault["flip"])] ^= 0xFF

        size = len(data)
        first, last, status = 0, size - 1, 200
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            a, _, b = rng[len("bytes="):].partition("-")
            first = int(a) if a else 0
            last = int(b) if b else size - 1
            if first >= size:
                self.send_response(416)
                self.send_header("Content-Range", "bytes */%d" % size)
                self.send_header("Content-Length", "0")
                self.end_headers()
                entry["status"] = 416
                return
            last = min(last, size - 1)
            status = 206
        body = bytes(data[first:last + 1])
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
        if status == 206:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (first, last, size))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        entry["status"] = status

        limit = len(body)
        if "truncate" in fault:
            limit = min(limit, int(fault["truncate"]))
        if "reset" in fault:
            limit = min(limit, int(fault["reset"]))
        if "stall" in fault:
            limit = min(limit, int(fault.get("after", "0")))
        rate = int(fault["rate"]) if "rate" in fault else 0
        sent = 0
        while sent < limit:
            chunk = max(1, rate // 20) if rate else 65536
            n = min(chunk, limit - sent)
            self.wfile.write(body[sent:sent + n])
            self.wfile.flush()
            sent += n
            entry["bytes"] = sent
            if rate:
                time.sleep(n / rate)
        if sent == len(body):
            return
        if "stall" in fault:
            deadline = time.time() + float(fault["stall"])
            while time.time() < deadline:
                # Stop when the client hangs up, so the log shows when it gave up.
                readable, _, _ = select.select([self.connection], [], [], 0.05)
                if readable and not self.connection.recv(1, socket.MSG_PEEK):
                    entry["error"] = "client hung up during the stall"
                    break
        if "reset" in fault:
            # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # Clients that hang up (retries, resets we injected) are part of the test.
        if isinstance(sys.exc_info()[1], (ConnectionError, BrokenPipeError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def main():
    global log_file, root
    p = argparse.ArgumentParser()
    p.add_argument("--root", required=True)
    p.add_argument("--port-file", required=True)
    p.add_argument("--log", required=True)
    args = p.parse_args()
    root = args.root
    log_file = open(args.log, "a", buffering=1)
    server = Server(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.rename(tmp, args.port_file)
    print(port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
