// rt-f2f web client: join a room, send camera + microphone, receive everyone else translated.
// Standard WebRTC only (Chromium and Firefox). Protocol: docs/API.md.

const $ = (id) => document.getElementById(id);

const CHANNEL_LABEL = "rt-f2f";
const GATHER_TIMEOUT_MS = 3000;
const PING_MS = 2000;
const CAPTION_CLEAR_MS = 6000;

const state = {
  room: null,
  token: null,
  config: null,
  iceServers: [],
  pc: null,
  dc: null,
  stream: null,
  slots: [],
  you: null,
  secret: null,
  joined: false,
  timers: [],
  dcRtt: null,
  serverStats: {},
  prev: new Map(), // stats of the previous second, per report id
};

// ---------------------------------------------------------------------------------------------------------------
// messages to the user

function showMessage(text, kind = "error") {
  const box = $("message");
  box.textContent = text;
  box.className = `message ${kind === "info" ? "info" : ""}`;
  box.hidden = false;
}

function clearMessage() {
  $("message").hidden = true;
}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (err) {
    throw new Error("The server is unreachable. Check your network connection, or whether the server is running, and try again.");
  }
  let body = {};
  try {
    body = await response.json();
  } catch (err) {
    body = {};
  }
  if (!response.ok) {
    const hint = body.hint ? ` (${body.hint})` : "";
    throw new Error(`${body.error || `The server answered ${response.status}`}${hint}`);
  }
  return body;
}

function mediaErrorText(err) {
  switch (err && err.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Camera and microphone access was denied. Allow it for this site (the icon next to the address bar) and press Join again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No camera or microphone was found. Connect one, or choose another device, and press Join again.";
    case "NotReadableError":
    case "AbortError":
      return "The camera or microphone is in use by another application. Close it and press Join again.";
    default:
      return `Could not open the camera or microphone: ${err && err.message ? err.message : err}`;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// setup: room, languages, devices

function parseHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  state.room = params.get("room");
  state.token = params.get("token");
}

// A language this server has no models for is shown greyed out, with why and what to pull as its tooltip.
function fillLanguages(languages, status) {
  const prefer = (navigator.language || "en").slice(0, 2).toLowerCase();
  const usable = (code) => !status || !status[code] || status[code].available;
  for (const id of ["speak", "hear"]) {
    const select = $(id);
    select.replaceChildren();
    for (const [code, name] of Object.entries(languages)) {
      const option = new Option(`${name} (${code})`, code);
      if (!usable(code)) {
        option.disabled = true;
        option.text += " - not available here";
        option.title = status[code].reason;
      }
      select.append(option);
    }
    select.value = languages[prefer] && usable(prefer) ? prefer : "en";
  }
}

async function fillDevices() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return;
  const devices = await navigator.mediaDevices.enumerateDevices();
  const lists = { videoinput: $("camera"), audioinput: $("microphone") };
  for (const [kind, select] of Object.entries(lists)) {
    const previous = select.value;
    select.replaceChildren(new Option("Default", ""));
    let n = 0;
    for (const d of devices.filter((x) => x.kind === kind)) {
      n += 1;
      if (!d.deviceId || d.deviceId === "default") continue;
      select.append(new Option(d.label || `${kind === "videoinput" ? "Camera" : "Microphone"} ${n}`, d.deviceId));
    }
    if (kind === "videoinput") select.append(new Option("No camera (audio only)", "none"));
    if ([...select.options].some((o) => o.value === previous)) select.value = previous;
  }
}

async function showRoom() {
  $("room-info").hidden = false;
  $("join-link").value = `${location.origin}/#room=${encodeURIComponent(state.room)}&token=${encodeURIComponent(state.token)}`;
  const room = await api(`/api/rooms/${encodeURIComponent(state.room)}`, {
    headers: { Authorization: `Bearer ${state.token}` },
  });
  state.iceServers = room.ice_servers || [];
  state.config.slots = room.slots;
  const people = room.participants.map((p) => p.name).join(", ");
  $("room-people").textContent = people ? `In the room: ${people}` : "The room is empty.";
  $("join-form").hidden = false;
}

async function createRoom() {
  clearMessage();
  try {
    const room = await api("/api/rooms", { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
    history.replaceState(null, "", `#room=${encodeURIComponent(room.id)}&token=${encodeURIComponent(room.token)}`);
    parseHash();
    $("no-room").hidden = true;
    await showRoom();
  } catch (err) {
    showMessage(err.message);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// joining

function missingVideoCodec() {
  // A server started with --video-codec takes only that codec; a browser without it would be refused with an
  // SDP error. Firefox has H.264 only with its OpenH264 plugin (downloaded on first use, or turned off).
  const wanted = state.config.video_codec;
  if (!wanted) return null;
  const mime = `video/${wanted}`.toLowerCase();
  // a browser that cannot list its codecs gets the benefit of the doubt (and the server's answer, if it fails)
  const has = (api) => !api || !api.getCapabilities || api.getCapabilities("video").codecs.some((c) => c.mimeType.toLowerCase() === mime);
  if (has(window.RTCRtpSender) && has(window.RTCRtpReceiver)) return null;
  const name = wanted.toLowerCase() === "h264" ? "H.264" : wanted.toUpperCase();
  const fix = name === "H.264"
    ? ' In Firefox, enable "OpenH264 Video Codec provided by Cisco Systems, Inc." under Add-ons and themes → Plugins, then reload this page.'
    : "";
  return `This server takes video only as ${name}, which this browser cannot send or play.${fix} Or join from another browser.`;
}

async function openMedia() {
  const processing = $("voice-processing").checked;
  const mic = $("microphone").value;
  const cam = $("camera").value;
  const audio = {
    echoCancellation: processing,
    noiseSuppression: processing,
    autoGainControl: processing,
    ...(mic ? { deviceId: { exact: mic } } : {}),
  };
  const video = cam === "none" ? false : {
    width: { ideal: 640 },
    height: { ideal: 480 },
    frameRate: { ideal: 25 },
    ...(cam ? { deviceId: { exact: cam } } : {}),
  };
  try {
    return await navigator.mediaDevices.getUserMedia({ audio, video });
  } catch (err) {
    if (video && (err.name === "NotFoundError" || err.name === "NotReadableError" || err.name === "OverconstrainedError")) {
      // no usable camera: join with the microphone alone, and say so
      const stream = await navigator.mediaDevices.getUserMedia({ audio, video: false });
      showMessage("No usable camera: joining with audio only.", "info");
      return stream;
    }
    throw err;
  }
}

function waitForGathering(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => pc.iceGatheringState === "complete" && done();
    pc.addEventListener("icegatheringstatechange", check);
    setTimeout(done, GATHER_TIMEOUT_MS); // the server takes whatever candidates exist by then
  });
}

function makeSlot(index, pc) {
  const audio = pc.addTransceiver("audio", { direction: "recvonly" });
  const video = pc.addTransceiver("video", { direction: "recvonly" });
  const tile = $("remote-tile").content.firstElementChild.cloneNode(true);
  tile.dataset.slot = String(index);
  const el = tile.querySelector("video");
  el.srcObject = new MediaStream([audio.receiver.track, video.receiver.track]);
  $("tiles").append(tile);
  return { index, audio, video, tile, speaker: null, captionTimer: null };
}

async function join(event) {
  event.preventDefault();
  clearMessage();
  if (!navigator.mediaDevices || !window.RTCPeerConnection) {
    showMessage("This page needs a secure connection (https, or localhost) and a browser with WebRTC for calls.");
    return;
  }
  const codecProblem = missingVideoCodec();
  if (codecProblem) {
    showMessage(codecProblem);
    return;
  }
  $("join").disabled = true;
  try {
    try {
      state.stream = await openMedia();
    } catch (err) {
      throw new Error(mediaErrorText(err));
    }
    await fillDevices();
    $("local-video").srcObject = state.stream;
    $("local-tile").hidden = false;
    $("local-langs").textContent = `${$("speak").value} → ${$("hear").value}`;

    const pc = new RTCPeerConnection({ iceServers: state.iceServers, bundlePolicy: "max-bundle" });
    state.pc = pc;
    const [mic] = state.stream.getAudioTracks();
    const [cam] = state.stream.getVideoTracks();
    pc.addTransceiver(mic || "audio", { direction: mic ? "sendonly" : "inactive", streams: [state.stream] });
    pc.addTransceiver(cam || "video", { direction: cam ? "sendonly" : "inactive", streams: [state.stream] });
    state.slots = [];
    for (let i = 0; i < state.config.slots; i += 1) state.slots.push(makeSlot(i, pc));
    const dc = pc.createDataChannel(CHANNEL_LABEL, { ordered: true });
    state.dc = dc;
    dc.addEventListener("message", onMessage);
    dc.addEventListener("open", () => {
      state.timers.push(setInterval(() => send({ type: "ping", t: performance.now() }), PING_MS));
    });
    dc.addEventListener("close", () => {
      if (state.joined) showMessage("The connection to the server closed. Press Join to reconnect.");
    });
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "failed" && state.joined) {
        showMessage("The connection was lost (network or server problem). Press Join to reconnect.");
        leave(false);
      }
    });

    await pc.setLocalDescription(await pc.createOffer());
    await waitForGathering(pc);
    const answer = await api(`/api/rooms/${encodeURIComponent(state.room)}/join`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        token: state.token,
        name: $("name").value,
        speak: $("speak").value,
        hear: $("hear").value,
        type: "offer",
        sdp: pc.localDescription.sdp,
      }),
    });
    state.you = answer.participant;
    state.secret = answer.secret;
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    state.joined = true;
    lockForm(true);
    document.body.dataset.joined = "1";
    $("leave").hidden = false;
    $("join").hidden = true;
    $("waiting").hidden = false;
    state.timers.push(setInterval(updateStats, 1000));
  } catch (err) {
    showMessage(err.message);
    leave(false);
  } finally {
    $("join").disabled = false;
  }
}

function lockForm(locked) {
  // languages and devices are fixed for a call: change them by leaving and joining again
  for (const id of ["name", "speak", "hear", "camera", "microphone", "voice-processing"]) $(id).disabled = locked;
}

function send(message) {
  if (state.dc && state.dc.readyState === "open") state.dc.send(JSON.stringify(message));
}

function leave(sayBye = true) {
  // over HTTP, not the data channel: pc.close() just below can discard a message still queued on the channel
  // (with a busy CPU the server then learnt of the departure only when the connection timed out)
  if (sayBye) leaveBeacon();
  state.joined = false;
  lockForm(false);
  delete document.body.dataset.joined;
  for (const t of state.timers) clearInterval(t);
  state.timers = [];
  if (state.pc) state.pc.close();
  if (state.stream) for (const t of state.stream.getTracks()) t.stop();
  for (const slot of state.slots) slot.tile.remove();
  state.pc = null;
  state.dc = null;
  state.stream = null;
  state.slots = [];
  state.prev.clear();
  $("local-tile").hidden = true;
  $("leave").hidden = true;
  $("join").hidden = false;
  $("waiting").hidden = true;
}

function leaveBeacon() {
  // the page is going away: tell the server now instead of leaving it to notice the silence
  if (!state.joined || !state.you) return;
  const body = JSON.stringify({ token: state.token, participant: state.you.id, secret: state.secret });
  navigator.sendBeacon(`/api/rooms/${encodeURIComponent(state.room)}/leave`, new Blob([body], { type: "application/json" }));
}

// ---------------------------------------------------------------------------------------------------------------
// data channel: roster, captions, status, stats

function onMessage(event) {
  let msg;
  try {
    msg = JSON.parse(event.data);
  } catch (err) {
    return;
  }
  switch (msg.type) {
    case "roster":
      applyRoster(msg);
      break;
    case "caption":
      showCaption(msg);
      break;
    case "status":
      showStatus(msg);
      break;
    case "stats":
      state.serverStats = msg.speakers || {};
      break;
    case "pong":
      if (typeof msg.t === "number") state.dcRtt = (performance.now() - msg.t) / 1000;
      break;
    case "error":
      console.warn("server:", msg.message);
      break;
    default:
      break;
  }
}

function slotOf(speakerId) {
  return state.slots.find((s) => s.speaker && s.speaker.id === speakerId);
}

function applyRoster(msg) {
  state.you = msg.you;
  const bySlot = new Map(msg.participants.filter((p) => p.slot !== null).map((p) => [p.slot, p]));
  for (const slot of state.slots) {
    const p = bySlot.get(slot.index) || null;
    const changed = (slot.speaker && slot.speaker.id) !== (p && p.id);
    slot.speaker = p;
    slot.tile.hidden = !p;
    if (!p) continue;
    slot.tile.dataset.speaker = p.id;
    slot.tile.querySelector(".who").textContent = p.name;
    slot.tile.querySelector(".langs").textContent = p.speak === msg.you.hear ? p.speak : `${p.speak} → ${msg.you.hear}`;
    if (changed) {
      slot.tile.querySelector(".caption-source").textContent = "";
      slot.tile.querySelector(".caption-translation").textContent = "";
      slot.tile.querySelector(".status").textContent = "";
      const video = slot.tile.querySelector("video");
      video.play().catch(() => {
        // autoplay with sound needs a user gesture in some browsers: the next click starts every tile
        showMessage("Click anywhere on the page to start the sound.", "info");
        document.addEventListener("click", () => {
          for (const s of state.slots) s.tile.querySelector("video").play().catch(() => {});
          clearMessage();
        }, { once: true });
      });
    }
  }
  const full = msg.participants.filter((p) => p.slot === null);
  if (full.length) showMessage(`${full.length} participant(s) cannot be shown: this page has no free slot.`, "info");
  $("waiting").hidden = msg.participants.length > 0;
}

function showCaption(msg) {
  let line;
  if (state.you && msg.speaker === state.you.id) {
    line = $("local-tile").querySelector(".caption-source");
    if (msg.kind !== "source") return;
  } else {
    const slot = slotOf(msg.speaker);
    if (!slot) return;
    line = slot.tile.querySelector(msg.kind === "source" ? ".caption-source" : ".caption-translation");
    clearTimeout(slot.captionTimer);
    slot.captionTimer = setTimeout(() => {
      slot.tile.querySelector(".caption-source").textContent = "";
      slot.tile.querySelector(".caption-translation").textContent = "";
    }, CAPTION_CLEAR_MS);
  }
  line.textContent = msg.text;
  line.classList.toggle("partial", !msg.final);
  line.lang = msg.language;
}

function showStatus(msg) {
  const slot = slotOf(msg.speaker);
  if (!slot) return;
  const badge = slot.tile.querySelector(".status");
  const text = {
    loading: "translator loading…",
    running: "translated",
    error: "not translated",
    ready: "",
  }[msg.state];
  badge.textContent = text === undefined ? msg.state : text;
  badge.title = msg.detail || "";
  badge.classList.toggle("error", msg.state === "error");
}

// ---------------------------------------------------------------------------------------------------------------
// live stats (getStats): end-to-end delay estimate, frame rate, bitrate

function inbound(report, kind) {
  for (const s of report.values()) if (s.type === "inbound-rtp" && s.kind === kind) return s;
  return null;
}

function rate(id, now, bytes) {
  const prev = state.prev.get(id);
  state.prev.set(id, { t: now, bytes });
  if (!prev || now <= prev.t) return null;
  return ((bytes - prev.bytes) * 8) / (now - prev.t); // timestamps are in ms: bits per ms = kbps
}

async function connectionRtt() {
  const report = await state.pc.getStats();
  let rtt = null;
  for (const s of report.values()) {
    if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded" && typeof s.currentRoundTripTime === "number") {
      rtt = s.currentRoundTripTime;
    }
  }
  return rtt ?? state.dcRtt;
}

async function updateStats() {
  if (!state.pc || !state.joined) return;
  document.body.classList.toggle("hide-stats", !$("show-stats").checked);
  const rtt = await connectionRtt();
  for (const slot of state.slots) {
    const box = slot.tile.querySelector(".stats");
    if (!slot.speaker) {
      box.textContent = "";
      continue;
    }
    const v = inbound(await slot.video.receiver.getStats(), "video");
    const a = inbound(await slot.audio.receiver.getStats(), "audio");
    const server = state.serverStats[slot.speaker.id] || {};
    const lines = [];
    let jitterBuffer = 0;
    if (a && a.jitterBufferEmittedCount) jitterBuffer = a.jitterBufferDelay / a.jitterBufferEmittedCount;
    if (rtt !== null && rtt !== undefined) {
      // mouth-to-ear, estimated: half the RTT up, the server's own delay, half the RTT down, the playout buffer
      const delay = rtt + (server.server_delay_s || 0) + jitterBuffer;
      lines.push(`delay ≈ ${delay.toFixed(2)} s`);
    }
    if (v) {
      const kbps = rate(v.id, v.timestamp, v.bytesReceived || 0);
      const fps = v.framesPerSecond ?? null;
      lines.push(`${fps !== null ? fps.toFixed(0) : "–"} fps ${v.frameWidth || "?"}×${v.frameHeight || "?"}`);
      if (kbps !== null) lines.push(`video ${kbps.toFixed(0)} kbps`);
    }
    if (a) {
      const kbps = rate(a.id, a.timestamp, a.bytesReceived || 0);
      if (kbps !== null) lines.push(`audio ${kbps.toFixed(0)} kbps`);
    }
    if (server.mode === "translated" && server.speech_lag_s !== null && server.speech_lag_s !== undefined) {
      lines.push(`translation lag ${server.speech_lag_s.toFixed(2)} s`);
    }
    if (server.lipsync) lines.push(`lip-sync ${server.lipsync_rendered} drawn, ${server.lipsync_skipped_late} late, ${server.lipsync_without_face} no face`);
    box.textContent = lines.join("\n");
    slot.tile.dataset.fps = v && v.framesPerSecond ? String(v.framesPerSecond) : "";
    slot.tile.dataset.size = v ? `${v.frameWidth || 0}x${v.frameHeight || 0}` : "";
  }
  const out = [...(await state.pc.getStats()).values()].find((s) => s.type === "outbound-rtp" && s.kind === "video");
  const local = $("local-stats");
  if (out) {
    const kbps = rate(out.id, out.timestamp, out.bytesSent || 0);
    local.textContent = `sending ${out.framesPerSecond ?? "–"} fps ${out.frameWidth || "?"}×${out.frameHeight || "?"}` +
      (kbps !== null ? `\n${kbps.toFixed(0)} kbps` : "") + (rtt !== null && rtt !== undefined ? `\nrtt ${(rtt * 1000).toFixed(0)} ms` : "");
  }
}

// ---------------------------------------------------------------------------------------------------------------

async function init() {
  parseHash();
  $("create-room").addEventListener("click", createRoom);
  $("copy-link").addEventListener("click", () => navigator.clipboard && navigator.clipboard.writeText($("join-link").value));
  $("join-form").addEventListener("submit", join);
  $("leave").addEventListener("click", () => leave(true));
  window.addEventListener("pagehide", leaveBeacon);
  window.addEventListener("hashchange", () => location.reload());
  try {
    state.config = await api("/api/config");
  } catch (err) {
    showMessage(err.message);
    return;
  }
  fillLanguages(state.config.languages, state.config.language_status);
  await fillDevices().catch(() => {});
  if (!state.room || !state.token) {
    $("no-room").hidden = false;
    return;
  }
  try {
    await showRoom();
  } catch (err) {
    showMessage(`${err.message}. This join link may be wrong or expired: create a new room.`);
    $("no-room").hidden = false;
  }
}

init();
