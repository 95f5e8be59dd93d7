// `?webrtc` plays the stream over WebRTC with WHEP: one offer (receive-only video and
// audio, every ICE candidate in it) POSTed to /live/{id}/whep, the answer from the 201;
// the session's Location is DELETEd when the page goes. window.sluiceWhep holds what the
// playback checks read: state, the first frame's delay from the request (ms), frames
// decoded, the audio energy received, the connection state.
// The loudest RMS level (0–1) of the received audio, measured every 100 ms by WebAudio.
function listen(track, w) {
  try {
    const ctx = new AudioContext(), analyser = ctx.createAnalyser();
    ctx.createMediaStreamSource(new MediaStream([track])).connect(analyser);
    const buf = new Float32Array(analyser.fftSize);
    w.audioRms = 0;
    setInterval(() => {
      ctx.resume().catch(() => {});
      analyser.getFloatTimeDomainData(buf);
      let sum = 0;
      for (const x of buf) sum += x * x;
      w.audioRms = Math.max(w.audioRms, Math.sqrt(sum / buf.length));
    }, 100);
  } catch (e) { w.audioError = String(e); }
}
async function startWhep(id, v, status) {
  const w = window.sluiceWhep = { state: "connecting", error: null, firstFrameMs: null, framesDecoded: 0, framesDropped: 0, audioEnergy: 0, audioSamples: 0, connection: "new" };
  const t0 = performance.now();
  try {
    const pc = new RTCPeerConnection();
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    const media = new MediaStream();
    pc.ontrack = (e) => {
      media.addTrack(e.track);
      if (e.track.kind === "audio") listen(e.track, w);
      v.srcObject = media;
      // Audio plays when the page may (autoplay policy), muted otherwise.
      v.muted = false;
      v.play().catch(() => { v.muted = true; v.play().catch(() => {}); });
    };
    if (v.requestVideoFrameCallback) v.requestVideoFrameCallback(() => { if (w.firstFrameMs === null) w.firstFrameMs = performance.now() - t0; });
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((done) => {
      if (pc.iceGatheringState === "complete") return done();
      pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && done());
      setTimeout(done, 1000);
    });
    w.offerMs = performance.now() - t0;
    const res = await fetch("/live/" + id + "/whep", { method: "POST", headers: { "Content-Type": "application/sdp" }, body: pc.localDescription.sdp });
    if (res.status !== 201) throw new Error("WHEP " + res.status + ": " + (await res.text()).trim());
    w.resource = res.headers.get("Location");
    w.answerMs = performance.now() - t0;
    pc.addEventListener("connectionstatechange", () => { if (pc.connectionState === "connected") w.connectedMs = performance.now() - t0; });
    await pc.setRemoteDescription({ type: "answer", sdp: await res.text() });
    w.state = "playing";
    status("playing " + id + " over WebRTC (WHEP)");
    addEventListener("pagehide", () => fetch(w.resource, { method: "DELETE", keepalive: true }));
    setInterval(async () => {
      (await pc.getStats()).forEach((r) => {
        if (r.type !== "inbound-rtp") return;
        if (r.kind === "video") {
          w.framesDecoded = r.framesDecoded || 0;
          w.framesDropped = r.framesDropped || 0;
          w.width = r.frameWidth; w.height = r.frameHeight;
          if (w.framesDecoded > 0 && w.firstFrameMs === null) w.firstFrameMs = performance.now() - t0;
        } else if (r.kind === "audio") {
          w.audioEnergy = r.totalAudioEnergy || 0;
          w.audioSamples = r.totalSamplesReceived || 0;
          w.audioConcealed = r.concealedSamples || 0;
          w.audioPackets = r.packetsReceived || 0;
          w.audioLevel = r.audioLevel || 0;
        }
      });
      w.connection = pc.connectionState;
    }, 100);
  } catch (e) {
    w.state = "failed";
    w.error = String(e);
    status("WebRTC failed: " + e);
  }
}
