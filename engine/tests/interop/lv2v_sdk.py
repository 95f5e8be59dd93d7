#!/usr/bin/env python3
"""
Third-party live-video-to-video client for a `sluice orchestrator`, written only
against the official Livepeer Python SDK (`livepeer_gateway` 1.0.0).

Usage:
    $SLUICE_PYENV/bin/python engine/tests/interop/lv2v_sdk.py ORCH_URL [MODEL_ID [SIGNER_URL]]

    ORCH_URL    e.g. https://127.0.0.1:40123 (the orchestrator's service URI)
    MODEL_ID    default "negate" (sluice serves noop, negate, edges, hue, blur)
    SIGNER_URL  optional, e.g. http://127.0.0.1:7936 (a go-livepeer-compatible remote
                signer such as `sluice signer`). When given, the job is paid through
                the SDK's own remote-signer support: start_lv2v(..., signer_url=...)
                makes the SDK call POST {signer}/sign-orchestrator-info (once per
                process, remote_signer.get_orch_info_sig) for the GetOrchestrator
                address/sig, and POST {signer}/generate-live-payment
                (PaymentSession.get_payment, type "lv2v", state round-tripped, 480 ->
                re-GetOrchestrator and retry, 482 -> SkipPaymentCycle) for the start
                payment and for every periodic POST {transcoder}/payment. Use a paid
                orchestrator (`sluice orchestrator --network <name> --eth-key-file ...`).

With SIGNER_URL the JSON also holds "signer_payments" (successful
/generate-live-payment calls), "payment_statuses" (HTTP status of every
/generate-live-payment reply, in order), "signer_calls" (path + status of every
signer call), "orch_payment_statuses" (HTTP status of every POST {transcoder}/payment)
and "orch_status" (GET {ORCH_URL}/status at the end, unverified TLS). Success then
also needs >= 1 signer payment and orch_status.tickets_received > 0.

What it does (and which SDK API each step uses):
  1. start_lv2v(orch_url, StartJobRequest(...))      -> LiveVideoToVideo job
     (SDK path: SelectionCursor -> get_orch_info over gRPC/TLS with TOFU pinning ->
      PaymentSession (off-chain: Livepeer-Payment "" and Livepeer-Segment =
      base64 SegData{auth_token}) -> POST {transcoder}/live-video-to-video.
      Inside a running event loop start_lv2v also starts the SDK's per-segment
      payment sender task and the Control keepalive.)
  2. job.start_media(MediaPublishConfig())           -> MediaPublish (PyAV libx264
     encoder -> MPEG-TS segment muxer -> TricklePublisher on publish_url), fed with
     ~6 s of synthetic 512x512 frames at 30 fps.
  3. job.media_output()                              -> MediaOutput (TrickleSubscriber
     on subscribe_url -> PyAV MPEG-TS decoder); mean luma (Y plane) per frame.
  4. job.control.write({"effect": "noop"})           -> Control (TricklePublisher on
     control_url), sent ~3 s into publishing.
  5. job.events()                                    -> Events == ChannelReader
     (TrickleSubscriber on events_url, one JSON object per segment); keeps the last
     status event.
  6. job.payment_session.send_payment (called by the SDK's own _payment_sender task,
     POST {transcoder}/payment); the script only wraps it to count successes.
  7. Prints one JSON line and exits 0 on success, 1 otherwise.

Frames are built with PyAV only (numpy is not installed in this virtualenv): a
yuv420p picture with Y=58 background and a 64x64 Y=190 square moving across it,
giving a mean luma of ~60; chroma is neutral (128).

SDK log output goes to stderr (level from LV2V_LOG, default WARNING); stdout holds
only the final JSON line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import ssl
import time
import urllib.request
import uuid
from fractions import Fraction
from typing import Any, Optional

import av

# Everything below comes from the SDK's public surface (livepeer_gateway/__init__.py).
from livepeer_gateway import (
    LiveVideoToVideo,
    MediaPublishConfig,
    StartJobRequest,
    VideoOutputConfig,
    start_lv2v,
)
# SDK modules whose own functions are wrapped (never reimplemented) for observation.
import livepeer_gateway.http as sdk_http
import livepeer_gateway.remote_signer as sdk_remote_signer
from livepeer_gateway.errors import SkipPaymentCycle

WIDTH = HEIGHT = 512
FPS = 30
PUBLISH_SECONDS = float(os.environ.get("LV2V_SECONDS", "6"))  # override for soak tests
CONTROL_AFTER_S = 3.0
BG_LUMA = 58          # background luma
SQ_LUMA = 190         # moving-square luma
SQ_SIZE = 64          # square side; mean luma = 58 + 132*64*64/512^2 ~= 60.06
DRAIN_IDLE_S = 3.0    # stop reading output after this long without a new frame
DRAIN_MAX_S = 15.0    # ...or after this long once publishing is done
EVENT_WAIT_MAX_S = 8.0  # wait at most this long (after output drains) for a status event

log = logging.getLogger("lv2v_client")


# ---------------------------------------------------------------------------
# Synthetic frames (PyAV only)
# ---------------------------------------------------------------------------

def make_frame(i: int) -> av.VideoFrame:
    """A 512x512 yuv420p frame: dark grey with a moving bright square, pts=i at 1/30 s."""
    frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
    y_plane, u_plane, v_plane = frame.planes
    ls = y_plane.line_size  # may be > WIDTH because of alignment padding
    y = bytearray([BG_LUMA]) * (ls * HEIGHT)
    # Square moves diagonally, 4 px per frame, wrapping around.
    x0 = (i * 4) % (WIDTH - SQ_SIZE)
    y0 = (i * 4) % (HEIGHT - SQ_SIZE)
    row = bytes([SQ_LUMA]) * SQ_SIZE
    for r in range(y0, y0 + SQ_SIZE):
        off = r * ls + x0
        y[off:off + SQ_SIZE] = row
    y_plane.update(bytes(y))
    for p in (u_plane, v_plane):
        p.update(bytes([128]) * (p.line_size * p.height))
    frame.pts = i
    frame.time_base = Fraction(1, FPS)
    return frame


def mean_luma(frame: av.VideoFrame) -> float:
    """Mean of the visible Y plane (ignores line padding)."""
    if frame.format.name not in ("yuv420p", "yuvj420p", "nv12", "yuv422p", "yuv444p"):
        frame = frame.reformat(format="yuv420p")
    p = frame.planes[0]
    w, h, ls = frame.width, frame.height, p.line_size
    buf = bytes(p)
    if ls == w:
        total = sum(buf[: w * h])
    else:
        total = 0
        for r in range(h):
            total += sum(buf[r * ls: r * ls + w])
    return total / float(w * h)


# ---------------------------------------------------------------------------
# Client
# ---------------------------------------------------------------------------

class Result:
    def __init__(self) -> None:
        self.frames_in = 0
        self.lumas: list[float] = []
        self.out_pts: list[Optional[float]] = []
        self.status_event: Optional[dict[str, Any]] = None
        self.events_seen = 0
        self.payments = 0
        self.payment_errors = 0
        self.payment_skips = 0
        self.control_sent_at: Optional[float] = None
        self.errors: list[str] = []
        # Remote-signer observations (SIGNER_URL mode).
        self.signer_payments = 0                  # successful /generate-live-payment
        self.payment_statuses: list[int] = []     # HTTP status of each /generate-live-payment
        self.signer_calls: list[list[Any]] = []   # [path, status] for every signer call
        self.signer_errors: list[str] = []        # SDK exceptions raised for signer calls
        self.orch_payment_statuses: list[int] = []  # HTTP status of each POST {transcoder}/payment

    def err(self, msg: str) -> None:
        log.error(msg)
        self.errors.append(msg)


def is_status_event(ev: dict[str, Any]) -> bool:
    # ai-runner style: {"queue_event_type": "ai_stream_events", "event": {"type": "status", ...}}
    # also accept a bare {"type": "status", ...}.
    if ev.get("type") == "status":
        return True
    inner = ev.get("event")
    return isinstance(inner, dict) and inner.get("type") == "status"


# ---------------------------------------------------------------------------
# Remote-signer observation (wraps SDK-internal call sites; no reimplementation)
# ---------------------------------------------------------------------------

def _url_path(url: str) -> str:
    from urllib.parse import urlparse
    return urlparse(url).path


def _http_status(exc: BaseException) -> Optional[int]:
    code = getattr(exc, "code", None)
    return code if isinstance(code, int) else None


def install_signer_observers(res: Result, signer_url: str) -> None:
    """Observe the SDK's signer and /payment traffic.

    * livepeer_gateway.http.urlopen: the SDK's sync JSON client (request_json_sync,
      used by get_orch_info_sig -> /sign-orchestrator-info and by
      PaymentSession.get_payment -> /generate-live-payment) resolves `urlopen` from
      its module globals at call time, so wrapping that name shows the real HTTP
      status of every signer reply (200 or the HTTPError code: 400/480/481/482/...).
    * livepeer_gateway.http.post_json_sync: the SDK function both signer calls go
      through (imported inside the functions at call time); a normal return for
      /generate-live-payment is a signer payment the SDK accepted.
    * livepeer_gateway.remote_signer.urlopen: used by PaymentSession.send_payment for
      POST {transcoder}/payment; records the orchestrator's status for each payment.
    """
    signer_origin = sdk_http._http_origin(signer_url)
    orig_urlopen = sdk_http.urlopen

    def observing_urlopen(req, *args, **kwargs):  # type: ignore[no-untyped-def]
        url = req.full_url if isinstance(req, urllib.request.Request) else str(req)
        is_signer = url.startswith(signer_origin)
        path = _url_path(url)
        try:
            resp = orig_urlopen(req, *args, **kwargs)
        except Exception as e:
            st = _http_status(e)
            if is_signer:
                res.signer_calls.append([path, st])
                if path.endswith("/generate-live-payment") and st is not None:
                    res.payment_statuses.append(st)
                log.info("signer %s -> %s (%s)", path, st, e)
            raise
        if is_signer:
            st = getattr(resp, "status", None)
            res.signer_calls.append([path, st])
            if path.endswith("/generate-live-payment"):
                res.payment_statuses.append(st)
            log.info("signer %s -> %s", path, st)
        return resp

    sdk_http.urlopen = observing_urlopen  # type: ignore[assignment]

    orig_post_json_sync = sdk_http.post_json_sync

    def counting_post_json_sync(url, payload, *args, **kwargs):  # type: ignore[no-untyped-def]
        is_pay = url.startswith(signer_origin) and _url_path(url).endswith("/generate-live-payment")
        if is_pay:
            log.info(
                "generate-live-payment request keys=%s type=%s ManifestID=%s state=%s",
                sorted(payload.keys()), payload.get("type"), payload.get("ManifestID"),
                "yes" if "state" in payload else "no",
            )
        try:
            data = orig_post_json_sync(url, payload, *args, **kwargs)
        except SkipPaymentCycle:
            raise  # 482: an expected "nothing to pay" answer, shown in payment_statuses
        except Exception as e:
            if url.startswith(signer_origin):
                res.signer_errors.append(f"{_url_path(url)}: {e.__class__.__name__}: {e}")
            raise
        if is_pay:
            res.signer_payments += 1
            log.info("generate-live-payment reply keys=%s", sorted(data.keys()))
        return data

    sdk_http.post_json_sync = counting_post_json_sync  # type: ignore[assignment]

    orig_rs_urlopen = sdk_remote_signer.urlopen

    def observing_rs_urlopen(req, *args, **kwargs):  # type: ignore[no-untyped-def]
        url = req.full_url if isinstance(req, urllib.request.Request) else str(req)
        try:
            resp = orig_rs_urlopen(req, *args, **kwargs)
        except Exception as e:
            if _url_path(url).endswith("/payment"):
                res.orch_payment_statuses.append(_http_status(e))
                log.info("orchestrator /payment -> %s (%s)", _http_status(e), e)
            raise
        if _url_path(url).endswith("/payment"):
            res.orch_payment_statuses.append(getattr(resp, "status", None))
            log.info("orchestrator /payment -> %s", getattr(resp, "status", None))
        return resp

    sdk_remote_signer.urlopen = observing_rs_urlopen  # type: ignore[assignment]


def fetch_orch_status(orch_url: str) -> dict[str, Any]:
    """GET {orch}/status over HTTPS without certificate verification."""
    url = sdk_http._http_origin(orch_url) + "/status"
    ctx = ssl._create_unverified_context()
    with urllib.request.urlopen(url, timeout=5.0, context=ctx) as resp:
        return json.loads(resp.read().decode("utf-8"))


async def read_output(job: LiveVideoToVideo, res: Result, last_frame_at: list[float]) -> None:
    """Step 3: MediaOutput.frames() (TrickleSubscriber + PyAV MPEG-TS decode)."""
    output = job.media_output()  # default start_seq=-2, LagPolicy.LATEST
    try:
        async for decoded in output.frames():
            if decoded.kind != "video":
                continue
            res.lumas.append(round(mean_luma(decoded.frame), 1))
            res.out_pts.append(decoded.pts_time)
            last_frame_at[0] = time.monotonic()
    except asyncio.CancelledError:
        raise
    except Exception as e:  # surfaced, not swallowed
        res.err(f"media output: {e.__class__.__name__}: {e}")
    finally:
        try:
            await output.close()
        except Exception as e:
            res.err(f"media output close: {e.__class__.__name__}: {e}")
        log.info("media output stats: %s", output.get_stats())
        pts = [p for p in res.out_pts if p is not None]
        if pts:
            log.info(
                "output pts: first=%.3f last=%.3f span=%.3f s over %d frames",
                pts[0], pts[-1], pts[-1] - pts[0], len(pts),
            )
        # Where the control switch shows in the output: first frame whose luma
        # differs from frame 0's by > 10 (only meaningful if the model changes luma).
        if res.lumas:
            switch = next((i for i, v in enumerate(res.lumas) if abs(v - res.lumas[0]) > 10), None)
            if switch is not None:
                log.info("output luma changes at frame %d (pts %s)", switch, res.out_pts[switch])


async def read_events(job: LiveVideoToVideo, res: Result, got_status: asyncio.Event) -> None:
    """Step 5: Events (ChannelReader) iterator over events_url."""
    if job.events is None:
        res.err("job has no events channel (events_url missing)")
        return
    try:
        async for ev in job.events():  # default start_seq=-2
            res.events_seen += 1
            log.info("event: %s", ev)
            if is_status_event(ev):
                res.status_event = ev
                got_status.set()
    except asyncio.CancelledError:
        raise
    except Exception as e:
        res.err(f"events: {e.__class__.__name__}: {e}")


async def publish(job: LiveVideoToVideo, res: Result, t0: float) -> None:
    """Steps 2 and 4: MediaPublish with SDK default encoder settings + Control message.

    Ends with MediaPublish.close(): flushes the encoder, finishes the last trickle
    segment and DELETEs the publish channel, which is how an SDK client signals
    end of input.
    """
    # The SDK's own defaults: one VideoOutputConfig (libx264, yuv420p, 2 s GOP,
    # superfast/zerolatency, fps hint None -> 30), MPEG-TS over trickle.
    media = job.start_media(MediaPublishConfig(tracks=[VideoOutputConfig()]))
    n = int(PUBLISH_SECONDS * FPS)
    control_done = False
    for i in range(n):
        # Pace in real time: frame i is due at t0 + i/FPS.
        delay = t0 + i / FPS - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await media.write_frame(make_frame(i))
        res.frames_in += 1
        if not control_done and i / FPS >= CONTROL_AFTER_S:
            control_done = True
            if job.control is None:
                res.err("job has no control channel (control_url missing)")
            else:
                try:
                    await job.control.write({"effect": "noop"})
                    res.control_sent_at = time.monotonic()
                    log.info("control message sent after %d frames", i + 1)
                except Exception as e:
                    res.err(f"control write: {e.__class__.__name__}: {e}")
    await media.close()
    stats = media.get_stats()
    log.info("media publish stats: %s", stats)
    if stats.encoder_errors or stats.terminal_failures:
        res.err(f"media publish: {stats}")


async def run(orch_url: str, model: str, signer_url: Optional[str] = None) -> Result:
    res = Result()
    if signer_url:
        install_signer_observers(res, signer_url)

    # Step 1: start the job through the SDK's start path. start_lv2v is
    # synchronous (gRPC + urllib); it is called directly from the coroutine so
    # that it sees the running loop and starts the payment sender task and the
    # control keepalive itself.
    req = StartJobRequest(
        request_id=uuid.uuid4().hex[:8],
        model_id=model,
        params={},
        stream_id=f"sdk-test-{uuid.uuid4().hex[:6]}",
    )
    # With signer_url the SDK signs GetOrchestrator and pays through the signer;
    # without it this is the off-chain path.
    job = start_lv2v(orch_url, req, signer_url=signer_url or None)
    log.info("job started: manifest_id=%s raw=%s", job.manifest_id, job.raw)

    # Step 6: count payments made by the SDK's own _payment_sender task. The task
    # was only created (not yet run) by start_lv2v, and it looks up
    # session.send_payment at call time, so wrapping the bound method here (before
    # the first await) sees every payment it sends.
    session = job.payment_session
    if session is None:
        res.err("start_lv2v returned no payment session")
    else:
        orig_send = session.send_payment

        def counting_send_payment() -> None:
            try:
                orig_send()
            except SkipPaymentCycle:
                # Signer answered 482: the SDK's sender skips this cycle by design.
                res.payment_skips += 1
                raise
            except Exception as e:
                res.payment_errors += 1
                res.errors.append(f"payment: {e.__class__.__name__}: {e}")
                raise
            res.payments += 1

        session.send_payment = counting_send_payment  # type: ignore[method-assign]
    if job._payment_task is None:  # SDK attribute set by start_payment_sender()
        res.err("SDK payment sender task was not started")

    last_frame_at = [time.monotonic()]
    got_status = asyncio.Event()
    out_task = asyncio.create_task(read_output(job, res, last_frame_at))
    ev_task = asyncio.create_task(read_events(job, res, got_status))

    t0 = time.monotonic()
    try:
        await publish(job, res, t0)

        # Drain: input is closed, so the orchestrator should finish the job and
        # close {mid}-out; MediaOutput.frames() then ends by itself (404 / closed
        # channel). Fall back to an idle timeout so a server that never closes
        # its output cannot hang the client.
        done_at = time.monotonic()
        last_frame_at[0] = max(last_frame_at[0], done_at)
        while not out_task.done():
            now = time.monotonic()
            if now - last_frame_at[0] >= DRAIN_IDLE_S or now - done_at >= DRAIN_MAX_S:
                log.warning("output did not end %.1f s after input closed; stopping", now - done_at)
                break
            await asyncio.sleep(0.05)
        if out_task.done():
            log.info("output ended %.2f s after input closed", time.monotonic() - done_at)

        # Status events come every few seconds; wait a bit more if none arrived yet.
        if res.status_event is None:
            try:
                await asyncio.wait_for(got_status.wait(), timeout=EVENT_WAIT_MAX_S)
            except asyncio.TimeoutError:
                pass
        if res.payments == 0 and session is not None:
            # The sender pays on the first output segment; give it a moment.
            for _ in range(30):
                if res.payments or res.payment_errors:
                    break
                await asyncio.sleep(0.1)
    finally:
        # job.close(): cancels the SDK payment sender task, closes Control (stops
        # the keepalive, DELETEs the control channel) and MediaPublish (already
        # closed above on the normal path; close() is idempotent).
        try:
            await job.close()
        except Exception as e:
            res.err(f"job close: {e.__class__.__name__}: {e}")
        for t in (out_task, ev_task):
            if not t.done():
                t.cancel()
        await asyncio.gather(out_task, ev_task, return_exceptions=True)
    return res


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    orch_url = sys.argv[1]
    model = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else "negate"
    signer_url = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] else None
    logging.basicConfig(
        level=os.environ.get("LV2V_LOG", "WARNING").upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    started = time.monotonic()
    res: Optional[Result] = None
    fatal: list[str] = []
    try:
        res = asyncio.run(run(orch_url, model, signer_url))
    except Exception as e:
        fatal.append(f"{e.__class__.__name__}: {e}")
    res = res or Result()
    errors = fatal + res.errors

    orch_status: Optional[dict[str, Any]] = None
    if signer_url:
        try:
            orch_status = fetch_orch_status(orch_url)
        except Exception as e:
            errors.append(f"orch status: {e.__class__.__name__}: {e}")
        if res.signer_payments < 1:
            errors.append("no successful /generate-live-payment through the signer")
        if orch_status is not None and not (orch_status.get("tickets_received") or 0) > 0:
            errors.append(f"orchestrator reports tickets_received={orch_status.get('tickets_received')}")

    # Success checks.
    expected_in = BG_LUMA + (SQ_LUMA - BG_LUMA) * SQ_SIZE * SQ_SIZE / (WIDTH * HEIGHT)
    if not fatal:
        if not res.lumas:
            errors.append("no output frames received")
        if res.payments < 1:
            errors.append("no successful payment through the SDK payment sender")
        if res.status_event is None:
            errors.append("no status event received")
        if res.lumas:
            last = res.lumas[-5:]
            if any(abs(v - expected_in) > 10 for v in last):
                errors.append(f"last frames not ~{expected_in:.0f} after the noop switch: {last}")
            if model == "negate":
                first = res.lumas[:5]
                if any(abs(v - (255 - expected_in)) > 10 for v in first):
                    errors.append(f"first frames not ~{255 - expected_in:.0f} (negated): {first}")

    if not fatal and len(res.lumas) != res.frames_in:
        errors.append(f"{res.frames_in - len(res.lumas)} of {res.frames_in} frames did not come back")

    out = {
        "frames_in": res.frames_in,
        "frames_out": len(res.lumas),
        "luma_out_first": res.lumas[:5],
        "luma_out_last": res.lumas[-5:],
        "status_event": res.status_event,
        "payments": res.payments,
        "errors": errors,
    }
    if signer_url:
        out["signer_payments"] = res.signer_payments
        out["payment_statuses"] = res.payment_statuses
        out["signer_calls"] = res.signer_calls
        out["orch_payment_statuses"] = res.orch_payment_statuses
        out["payment_skips"] = res.payment_skips
        if res.signer_errors:
            out["signer_errors"] = res.signer_errors
        out["orch_status"] = orch_status
    log.info("run took %.1f s", time.monotonic() - started)
    print(json.dumps(out), flush=True)
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
