"""A BYOC worker for Sluice's tests: the `text-reversal` capability of go-livepeer's
BYOC documentation, plus a streamed variant. Standard library only.

    python byoc_worker.py TOKEN     # prints "Worker: http://127.0.0.1:PORT", then serves

POST /reverse-text   {"text": T}  ->  {"original": T, "reversed": T[::-1]}
POST /stream-words   {"text": T}  ->  text/event-stream, one `data: {"word": W}` per word,
                                      then `data: [DONE]`
POST /slow           {"seconds": S} -> sleeps S, then {"slept": S}
Every request must carry `Authorization: Bearer TOKEN` (401 otherwise).
"""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = sys.argv[1] if len(sys.argv) > 1 else ""


class Worker(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, ctype="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Metadata", json.dumps({"worker": "byoc_worker.py"}))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n)
        if TOKEN and self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self.reply(401, {"error": "bad token"})
        try:
            req = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            return self.reply(400, {"error": "not JSON"})
        if self.path == "/reverse-text":
            text = req.get("text", "")
            return self.reply(200, {"original": text, "reversed": text[::-1]})
        if self.path == "/slow":
            time.sleep(float(req.get("seconds", 1)))
            return self.reply(200, {"slept": req.get("seconds", 1)})
        if self.path == "/stream-words":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            for word in req.get("text", "").split():
                self.wfile.write(f"data: {json.dumps({'word': word})}\n\n".encode())
                self.wfile.flush()
                time.sleep(0.02)
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True
            return
        return self.reply(404, {"error": f"no route {self.path}"})


server = ThreadingHTTPServer(("127.0.0.1", 0), Worker)
print(f"Worker: http://127.0.0.1:{server.server_address[1]}", flush=True)
server.serve_forever()
