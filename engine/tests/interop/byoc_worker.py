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
import time

from stdlib_server import JsonHandler, serve


class Worker(JsonHandler):
    extra_headers = {"X-Metadata": json.dumps({"worker": "byoc_worker.py"})}

    def do_POST(self):
        raw = self.read_authorized()
        if raw is None:
            return
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
            self.start_events()
            for word in req.get("text", "").split():
                self.event(json.dumps({"word": word}))
                time.sleep(0.02)
            self.event("[DONE]")
            self.close_connection = True
            return
        return self.reply(404, {"error": f"no route {self.path}"})


serve(Worker, "Worker")
