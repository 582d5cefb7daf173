// rt-f2f live event: the listener view (pick a language, watch its Janus mountpoint, read captions) and the speaker
// view (publish camera + microphone into the event's Janus VideoRoom as "speaker"). Media goes browser <-> Janus;
// the event server only counts listeners and reports each language's state (/api/event).
"use strict";

const $ = (id) => document.getElementById(id);
const note = (text) => { $("note").textContent = text || ""; };
let janus = null;      // {url, session, handle, poll}
let pc = null;
let listener = null;   // our listener id on the event server
let statusTimer = null;

async function post(url, body) {
  const resp = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  const data = await resp.json();
  if (!resp.ok || data.janus === "error") {
    const reason = data.error && (data.error.reason || data.error) || resp.statusText;
    throw new Error(reason + (data.hint ? ` (${data.hint})` : ""));
  }
  return data;
}

let tx = 0;
async function janusOpen(url, plugin) {
  const created = await post(url, {janus: "create", transaction: `t${++tx}`});
  const session = `${url}/${created.data.id}`;
  const attached = await post(session, {janus: "attach", plugin, transaction: `t${++tx}`});
  const state = {url, session, handle: `${session}/${attached.data.id}`, waiters: {}, onEvent: null, open: true};
  (async function poll() {   // Janus's long-poll: plugin events, SDP, hangups
    while (state.open) {
      try {
        const events = await (await fetch(`${session}?maxev=8`)).json();
        for (const ev of [].concat(events)) {
          if (ev.transaction && state.waiters[ev.transaction]) { state.waiters[ev.transaction](ev); delete state.waiters[ev.transaction]; }
          else if (state.onEvent) state.onEvent(ev);
        }
      } catch (e) { if (state.open) { note("lost contact with the media server; retrying…"); await new Promise(r => setTimeout(r, 1000)); } }
    }
  })();
  state.keepalive = setInterval(() => post(session, {janus: "keepalive", transaction: `t${++tx}`}).catch(() => {}), 20000);
  return state;
}

async function janusMessage(state, body, jsep) {
  const transaction = `t${++tx}`;
  const reply = new Promise((resolve) => { state.waiters[transaction] = resolve; });
  const ack = await post(state.handle, {janus: "message", body, jsep, transaction});
  const ev = ack.janus === "ack" ? await reply : ack;
  const data = ev.plugindata && ev.plugindata.data || {};
  if (data.error) throw new Error(data.error);
  return {data, jsep: ev.jsep};
}

function janusClose() {
  if (!janus) return;
  janus.open = false;
  clearInterval(janus.keepalive);
  post(janus.session, {janus: "destroy", transaction: `t${++tx}`}).catch(() => {});
  janus = null;
}

// -- listener ---------------------------------------------------------------------------------------------------
function showCaption(msg) {
  (window.__eventMessages = window.__eventMessages || []).push(msg);   // for tests and debugging
  if (msg.type === "status") { note(msg.text || ""); return; }
  if (msg.type !== "caption") return;
  const line = document.createElement("div");
  line.textContent = msg.text;
  if (msg.final === false) line.className = "partial";
  const box = $("captions");
  if (box.lastChild && box.lastChild.className === "partial") box.removeChild(box.lastChild);
  box.appendChild(line);
  while (box.childNodes.length > 3) box.removeChild(box.firstChild);
}

async function listen() {
  const language = $("language").value;
  $("listen").disabled = true;
  try {
    const joined = await post("/api/event/listeners", {language});
    listener = joined.listener;
    janus = await janusOpen(joined.janus, "janus.plugin.streaming");
    const offer = await janusMessage(janus, {request: "watch", id: joined.mountpoint});
    pc = new RTCPeerConnection();
    pc.ontrack = (e) => { $("video").srcObject = e.streams[0] || new MediaStream([e.track]); };
    pc.onconnectionstatechange = () => {   // Janus restarted or the network dropped: join again
      if (pc && pc.connectionState === "failed") {
        note("the stream was lost; reconnecting…");
        stopListening();
        setTimeout(listen, 2000);
      }
    };
    const channel = pc.createDataChannel("JanusDataChannel");   // Janus relays captions once we open one
    const decoder = new TextDecoder();
    const onMessage = (e) => {   // Janus may relay the mountpoint's datagrams as binary
      try { showCaption(JSON.parse(typeof e.data === "string" ? e.data : decoder.decode(e.data))); } catch (_) {}
    };
    channel.binaryType = "arraybuffer";
    channel.onmessage = onMessage;
    channel.onopen = () => { window.__channelOpen = true; };
    pc.ondatachannel = (e) => { e.channel.binaryType = "arraybuffer"; e.channel.onmessage = onMessage; };
    await pc.setRemoteDescription(offer.jsep);
    await pc.setLocalDescription(await pc.createAnswer());
    await janusMessage(janus, {request: "start"}, pc.localDescription);
    $("stop").disabled = false;
    note(joined.state === "live" || joined.language === "original" ? "" : "translation is starting: you hear the original meanwhile");
  } catch (e) {
    note(`could not start: ${e.message}`);
    $("listen").disabled = false;
    stopListening();
  }
}

function stopListening() {
  if (listener) navigator.sendBeacon(`/api/event/listeners/${listener}/leave`);
  listener = null;
  if (pc) pc.close();
  pc = null;
  janusClose();
  $("stop").disabled = true;
  $("listen").disabled = false;
}

async function refreshStatus() {
  try {
    const st = await (await fetch("/api/event")).json();
    $("title").textContent = `Live event (${st.source})`;
    const select = $("language");
    if (!select.options.length) {
      select.add(new Option(`original (${st.source})`, "original"));
      for (const [code, l] of Object.entries(st.languages)) select.add(new Option(`${l.name} (${code})`, code));
    }
    const l = st.languages[select.value];
    $("delay").textContent = !l ? "live" : l.delay_s == null ? "measuring…" : `${l.delay_s.toFixed(1)} s`;
  } catch (e) { note("the event server does not answer"); }
}

// -- speaker ----------------------------------------------------------------------------------------------------
async function speak() {
  $("speak").disabled = true;
  try {
    const st = await (await fetch("/api/event")).json();
    const stream = await navigator.mediaDevices.getUserMedia({audio: true, video: {width: 640, height: 480}});
    $("video").srcObject = stream;
    $("video").muted = true;
    janus = await janusOpen(st.janus, "janus.plugin.videoroom");
    await janusMessage(janus, {request: "join", ptype: "publisher", room: st.room, display: "speaker"});
    pc = new RTCPeerConnection();
    for (const track of stream.getTracks()) pc.addTransceiver(track, {direction: "sendonly"});
    await pc.setLocalDescription(await pc.createOffer());
    const answer = await janusMessage(janus, {request: "publish", audio: true, video: true}, pc.localDescription);
    await pc.setRemoteDescription(answer.jsep);
    $("unspeak").disabled = false;
    note("you are live");
  } catch (e) {
    note(`could not start: ${e.message}`);
    $("speak").disabled = false;
  }
}

function unspeak() {
  if (pc) pc.close();
  pc = null;
  janusClose();
  $("unspeak").disabled = true;
  $("speak").disabled = false;
  note("");
}

const role = new URLSearchParams(location.search).get("role") === "speaker" ? "speaker" : "listener";
$(role).classList.remove("hidden");
$("listen").onclick = listen;
$("stop").onclick = stopListening;
$("speak").onclick = speak;
$("unspeak").onclick = unspeak;
window.addEventListener("pagehide", () => { if (role === "listener") stopListening(); });
refreshStatus();
statusTimer = setInterval(refreshStatus, 2000);
