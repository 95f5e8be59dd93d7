"""What Sluice's stdlib test servers (`byoc_worker.py`, `ai_runner.py`) share: a JSON
handler that reads the body before checking the bearer token (so a refused request
leaves the keep-alive connection clean), and serving on an ephemeral loopback port."""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class JsonHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    token = ""
    extra_headers: dict = {}

    def log_message(self, *args):
        pass

    def reply(self, status, body, ctype="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in self.extra_headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def read_authorized(self):
        """The request's body; None (after a 401) when the bearer token is wrong."""
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n)
        if self.token and self.headers.get("Authorization") != f"Bearer {self.token}":
            self.reply(401, {"detail": {"msg": "bad token"}})
            return None
        return raw

    def start_events(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()

    def event(self, data: str):
        self.wfile.write(f"data: {data}\n\n".encode())
        self.wfile.flush()


def serve(handler, label):
    handler.token = sys.argv[1] if len(sys.argv) > 1 else ""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    print(f"{label}: http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()
