// The page the harness opens in Chromium: Debian's spice-html5 (served
// beside this file under spice-html5/) connected to one WebSocket gateway,
// with what a person would see recorded for the harness to read over the
// DevTools protocol: the primary surface's pixels, each draw, spice-html5's
// own errors and every WebSocket's close code. The URL and the password
// come from the harness through the protocol (connect), never from this
// page's address.
import * as SpiceHtml5 from './spice-html5/main.js';

const H = {
  t0: 0,
  started: false,
  connected: false, // spice-html5 reported success (MAIN_INIT)
  errors: [], // spice-html5's error callback, in order
  sockets: [], // one record per WebSocket spice-html5 opened
  draws: 0, // draw calls on a spice surface
  painted: null, // ms from connect to the first non-blank primary surface
  waiters: [],
  sc: null,
};

// Every WebSocket spice-html5 opens goes through this subclass, which
// records its subprotocol, state and close code. The URL is not kept: it
// may carry the gateway's token.
const NativeWebSocket = window.WebSocket;
class RecordingWebSocket extends NativeWebSocket {
  constructor(url, protocols) {
    super(url, protocols);
    const rec = { ws: this, state: 'connecting', protocol: '', code: null, reason: '', clean: null, error: false, opened: null, closed: null };
    H.sockets.push(rec);
    this.addEventListener('open', () => { rec.state = 'open'; rec.protocol = this.protocol; rec.opened = performance.now() - H.t0; });
    this.addEventListener('error', () => { rec.error = true; wake(); });
    // A message can move spice-html5's channel state (linked, ready):
    // waiters look again once every listener has seen it.
    this.addEventListener('message', () => { if (H.waiters.length) setTimeout(wake, 0); });
    this.addEventListener('close', (e) => {
      rec.state = 'closed'; rec.code = e.code; rec.reason = e.reason; rec.clean = e.wasClean;
      rec.closed = performance.now() - H.t0;
      wake();
    });
  }
}
window.WebSocket = RecordingWebSocket;

function primary() {
  const cs = document.querySelectorAll('#spice-screen canvas[id^="spice_surface_"]');
  return cs.length ? cs[0] : null;
}

function blank(canvas) {
  const d = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  for (let i = 4; i < d.length; i += 4) {
    if (d[i] !== d[0] || d[i + 1] !== d[1] || d[i + 2] !== d[2]) return false;
  }
  return true;
}

function wake() {
  const ws = H.waiters;
  H.waiters = [];
  for (const w of ws) w();
}

// Each draw on a spice surface counts, and wakes whoever waits for one;
// until the primary surface first shows something, each draw checks it.
let checkQueued = false;
function drew(ctx) {
  const c = ctx && ctx.canvas;
  if (!c || !c.id || !c.id.startsWith('spice_surface_')) return;
  H.draws++;
  if (H.painted === null && !checkQueued) {
    checkQueued = true;
    queueMicrotask(() => {
      checkQueued = false;
      const p = primary();
      if (H.painted === null && p && !blank(p)) H.painted = performance.now() - H.t0;
      wake();
    });
  } else {
    queueMicrotask(wake);
  }
}
const proto = CanvasRenderingContext2D.prototype;
for (const name of ['putImageData', 'drawImage', 'fillRect']) {
  const orig = proto[name];
  proto[name] = function (...args) {
    const r = orig.apply(this, args);
    drew(this);
    return r;
  };
}

function channelOf(rec) {
  const p = rec.ws.parent;
  return p && typeof p.channel_type === 'function' ? p.channel_type() : '';
}

// linkOf is spice-html5's own state of the socket's channel: "start",
// "link", "ticket", "ready", "error", …
function linkOf(rec) {
  const p = rec.ws.parent;
  return p && typeof p.state === 'string' ? p.state : '';
}

function state() {
  const p = primary();
  return {
    started: H.started,
    connected: H.connected,
    errors: H.errors.slice(),
    sockets: H.sockets.map((r) => ({
      channel: channelOf(r), link: linkOf(r), state: r.state, protocol: r.protocol, code: r.code, reason: r.reason,
      clean: r.clean, error: r.error, opened: r.opened, closed: r.closed,
    })),
    draws: H.draws,
    painted: H.painted,
    width: p ? p.width : 0,
    height: p ? p.height : 0,
  };
}

window.harness = {
  // connect opens spice-html5's main connection to uri with password.
  connect(uri, password) {
    if (H.started) throw new Error('harness: connect called twice');
    H.started = true;
    H.t0 = performance.now();
    H.sc = new SpiceHtml5.SpiceMainConn({
      uri, password, screen_id: 'spice-screen', message_id: 'message-div',
      // spice-html5 hands on a socket's error Event as it is.
      onerror: (e) => { H.errors.push(e instanceof Event ? 'WebSocket ' + e.type + ' event' : String((e && e.message) || e)); wake(); },
      onsuccess: () => { H.connected = true; wake(); },
    });
  },
  state,
  // change resolves with the state once there are more draws than draws,
  // more errors than errors, or a socket changed state.
  change(draws, errors, sig) {
    const now = state();
    if (now.draws > draws || now.errors.length > errors || sockSig(now) !== sig) return Promise.resolve(now);
    return new Promise((resolve) => { H.waiters.push(() => resolve(state())); });
  },
  sig: () => sockSig(state()),
  // pixels returns the primary surface as base64 RGB.
  pixels() {
    const p = primary();
    if (!p) return null;
    const d = p.getContext('2d').getImageData(0, 0, p.width, p.height).data;
    const rgb = new Uint8Array((d.length / 4) * 3);
    for (let i = 0, j = 0; i < d.length; i += 4, j += 3) {
      rgb[j] = d[i]; rgb[j + 1] = d[i + 1]; rgb[j + 2] = d[i + 2];
    }
    let s = '';
    for (let i = 0; i < rgb.length; i += 0x8000) s += String.fromCharCode.apply(null, rgb.subarray(i, i + 0x8000));
    return { width: p.width, height: p.height, rgb: btoa(s) };
  },
  // rect is where the primary surface sits on the page, in CSS pixels.
  rect() {
    const p = primary();
    if (!p) return null;
    // The content box: spice.css may give the canvas a border.
    const r = p.getBoundingClientRect();
    return { x: r.left + p.clientLeft + window.scrollX, y: r.top + p.clientTop + window.scrollY, width: p.clientWidth, height: p.clientHeight };
  },
  // focus gives the primary surface the keyboard, as a click would.
  focus() {
    const p = primary();
    if (!p) return false;
    p.focus();
    return document.activeElement === p;
  },
  stop() { if (H.sc) H.sc.stop(); },
};

function sockSig(st) {
  return st.sockets.map((s) => s.state + ':' + s.link + (s.error ? '!' : '')).join(',') + '|' + (st.connected ? 'c' : '') + (st.painted === null ? '' : 'p');
}
