"""A stand-in for an ai-runner container (the API go-livepeer orchestrators forward jobs
to), for Sluice's tests of `sluice orchestrator --ai-models` with a runner `url`.
Standard library only.

    python ai_runner.py TOKEN    # prints "Runner: http://127.0.0.1:PORT", then serves

POST /text-to-image  -> {"images": [{"url": "data:image/png;base64,<1x1 PNG>", "seed": 7, "nsfw": false}]}
POST /llm            -> with "stream": true, ai-runner's event stream: a chunk per word,
                        the last with finish_reason "stop", then `data: [DONE]`
POST /upscale        -> 400 {"detail": {"msg": "runner refuses this image"}}
Every request must carry `Authorization: Bearer TOKEN` (401 otherwise).
"""
import json

from stdlib_server import JsonHandler, serve

PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABAQMAAAAl21bKAAAAA1BMVEUAAACnej3aAAAAAXRSTlMAQObYZgAAAApJREFUCNdjYAAAAAIAAeIhvDMAAAAASUVORK5CYII=")


class Runner(JsonHandler):
    def do_POST(self):
        raw = self.read_authorized()
        if raw is None:
            return
        if self.path == "/text-to-image":
            req = json.loads(raw)
            return self.reply(200, {"images": [{"url": "data:image/png;base64," + PNG, "seed": 7, "nsfw": False}],
                                    "echo_model": req.get("model_id")})
        if self.path == "/upscale":
            return self.reply(400, {"detail": {"msg": "runner refuses this image"}})
        if self.path == "/llm":
            req = json.loads(raw)
            words = req["messages"][-1]["content"].split()
            self.start_events()
            for i, w in enumerate(words):
                last = i + 1 == len(words)
                chunk = {"id": "r1", "model": req.get("model", ""), "created": 1,
                         "choices": [{"index": 0, "delta": {"role": "assistant", "content": w + ("" if last else " ")},
                                      "finish_reason": "stop" if last else None}],
                         "usage": {"prompt_tokens": len(words), "completion_tokens": i + 1,
                                   "total_tokens": len(words) + i + 1}}
                self.event(json.dumps(chunk))
            self.event("[DONE]")
            self.close_connection = True
            return
        return self.reply(404, {"detail": {"msg": f"no route {self.path}"}})


serve(Runner, "Runner")
