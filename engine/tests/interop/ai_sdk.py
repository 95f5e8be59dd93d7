"""Drives Livepeer's AI Python SDK (`livepeer-ai`) and the `openai` client against a Sluice
gateway, for Sluice's interop tests. Every pipeline goes through the SDK's own request
and response models; result URLs are fetched back from the gateway.

    python ai_sdk.py GATEWAY_URL IMAGE AUDIO [API_KEY]

Prints one JSON object: per call, what came back (sizes, texts, token counts), or the
error the client raised. The Rust test asserts on it.
"""
import json
import sys
import urllib.request

from livepeer_ai import Livepeer
from livepeer_ai.models import components
import openai

base, image_path, audio_path = sys.argv[1], sys.argv[2], sys.argv[3]
key = sys.argv[4] if len(sys.argv) > 4 else "unused"
image = open(image_path, "rb").read()
audio = open(audio_path, "rb").read()
out = {}


def fetch(url: str) -> dict:
    """GETs a result URL (relative to the gateway) and says what it holds."""
    full = url if url.startswith("http") else base + url
    req = urllib.request.Request(full, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        body = r.read()
        return {"status": r.status, "type": r.headers.get("Content-Type"), "bytes": len(body), "head": body[:4].hex()}


def record(name, fn):
    try:
        out[name] = fn()
    except Exception as e:  # the test prints what the client raised
        out[name] = {"error": f"{type(e).__name__}: {e}"}


lp = Livepeer(http_bearer=key, server_url=base)


def t2i():
    r = lp.generate.text_to_image(request={"prompt": "a lighthouse at dusk", "width": 320, "height": 240})
    imgs = r.image_response.images
    return {"n": len(imgs), "seed": imgs[0].seed, "file": fetch(imgs[0].url), "url": imgs[0].url}


def i2i():
    r = lp.generate.image_to_image(
        request={"prompt": "make it warmer", "image": {"file_name": "in.png", "content": image}, "strength": 0.25}
    )
    return {"n": len(r.image_response.images), "file": fetch(r.image_response.images[0].url)}


def upscale():
    r = lp.generate.upscale(request={"prompt": "sharper", "image": {"file_name": "in.png", "content": image}})
    return {"file": fetch(r.image_response.images[0].url)}


def i2v():
    r = lp.generate.image_to_video(
        request={"image": {"file_name": "in.png", "content": image}, "width": 256, "height": 144, "fps": 8}
    )
    return {"file": fetch(r.video_response.images[0].url)}


def a2t():
    r = lp.generate.audio_to_text(request={"audio": {"file_name": "in.wav", "content": audio}})
    t = r.text_response
    return {"text": t.text, "chunks": len(t.chunks)}


def sam2():
    r = lp.generate.segment_anything2(
        request={"image": {"file_name": "in.png", "content": image}, "box": "[10, 10, 50, 40]"}
    )
    masks = json.loads(r.masks_response.masks)
    return {"shape": [len(masks), len(masks[0]), len(masks[0][0])], "scores": r.masks_response.scores}


def i2t():
    r = lp.generate.image_to_text(request={"image": {"file_name": "in.png", "content": image}, "prompt": "what"})
    return {"text": r.image_to_text_response.text}


def tts():
    r = lp.generate.text_to_speech(request={"text": "Sluice speaks"})
    return {"file": fetch(r.audio_response.audio.url)}


def llm():
    r = lp.generate.llm(
        request={"model": "echo", "messages": [{"role": "user", "content": "tell me a story"}], "max_tokens": 3}
    )
    c = r.llm_response.choices[0]
    return {"text": c.message.content, "finish": c.finish_reason, "completion_tokens": r.llm_response.usage.completion_tokens}


def bad_request():
    try:
        lp.generate.text_to_image(request={"prompt": ""})
    except Exception as e:
        return {"raised": type(e).__name__, "text": str(e)}
    return {"raised": None}


oa = openai.OpenAI(base_url=base + "/v1", api_key=key)


def openai_plain():
    r = oa.chat.completions.create(model="echo", messages=[{"role": "user", "content": "one two three"}])
    return {"text": r.choices[0].message.content, "finish": r.choices[0].finish_reason, "total": r.usage.total_tokens}


def openai_stream():
    parts, finish = [], None
    for chunk in oa.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "streamed words here"}], stream=True
    ):
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
    return {"text": "".join(parts), "chunks": len(parts), "finish": finish}


def openai_models():
    return {"ids": sorted(m.id for m in oa.models.list())}


for name, fn in [
    ("text-to-image", t2i),
    ("image-to-image", i2i),
    ("upscale", upscale),
    ("image-to-video", i2v),
    ("audio-to-text", a2t),
    ("segment-anything-2", sam2),
    ("image-to-text", i2t),
    ("text-to-speech", tts),
    ("llm", llm),
    ("bad-request", bad_request),
    ("openai", openai_plain),
    ("openai-stream", openai_stream),
    ("openai-models", openai_models),
]:
    record(name, fn)

print(json.dumps(out))
