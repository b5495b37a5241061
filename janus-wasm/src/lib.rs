//! The Janus client in the browser: janus-client's [`Engine`] (so janus-core's framing, sealing
//! and handshake) compiled to WebAssembly, over the browser's `WebSocket` (binary messages,
//! `binaryType = "arraybuffer"`, one frame per message as spec §1.3 requires), with the
//! browser's timers and `crypto.getRandomValues`.
//!
//! ```js
//! import init, { JanusClient, selfTest } from "./pkg/janus_wasm.js";
//! await init();
//! const client = await JanusClient.connect("ws://127.0.0.1:7002/ws", token, {
//!   clientCertSeed, serverCertKey,   // Uint8Array(32) each; omit both for an unencrypted gateway
//!   heartbeatMs: 10000,              // optional; 0 turns heartbeats off
//!   requestTimeoutMs: 30000,         // optional
//! });
//! client.onPush((p) => console.log(p.module, p.seq, p.data));   // p.index is 0
//! client.onClose((reason) => console.log("closed:", reason));
//! const reply = await client.request(3, 1, new TextEncoder().encode("hello"));
//! // rejects with an Error whose `kind` is "failed" (the server's message), "timeout",
//! // "closed" (the connection ended first) or "not-connected"
//! client.close();
//! ```
//!
//! Reconnecting is the page's decision here (call `connect` again with a fresh token, e.g. from
//! `onClose`); `janus_client::Reconnect` holds the backoff arithmetic to use. Requests resolve
//! to `{ module, seq, obj, index, dataVersion, data: Uint8Array }`.

use std::{cell::RefCell, rc::Rc};

use bytes::Bytes;
use janus_client::{
    Config, Disconnect, Endpoint, Engine, Event, Output, Packet, RequestError, keys_from_bytes,
};
use janus_core::{Time, client::Outgoing, frame::Frames};
use js_sys::{Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast as _, prelude::*};
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

impl std::fmt::Debug for JanusClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let established = self
            .inner
            .try_borrow()
            .map(|i| i.engine.is_established())
            .unwrap_or(false);
        f.debug_struct("JanusClient")
            .field("established", &established)
            .finish()
    }
}

/// A request's promise: its resolve and reject functions.
type Waiter = (Function, Function);

/// Recomputes the wire-protocol spec's golden vectors (V1–V5) in this wasm build: the number
/// checked (12), or an exception naming the first that differs.
#[wasm_bindgen(js_name = selfTest)]
pub fn self_test() -> Result<u32, JsError> {
    janus_client::known_answers::check()
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        .map_err(|m| JsError::new(&m.to_string()))
}

/// A client connection (see the [crate docs](crate)).
#[wasm_bindgen]
pub struct JanusClient {
    inner: Rc<RefCell<Inner>>,
}

/// The JavaScript handlers of one connection. They hold only a weak reference to the client,
/// and are released after the connection ends.
struct Handlers {
    _open: Closure<dyn FnMut()>,
    _message: Closure<dyn FnMut(MessageEvent)>,
    _close: Closure<dyn FnMut(CloseEvent)>,
    timer: Closure<dyn FnMut()>,
}

struct Inner {
    engine: Engine<Waiter>,
    ws: WebSocket,
    config: janus_core::client::ClientConfig,
    /// The promise `connect` returned, until the handshake settles it.
    connecting: Option<Waiter>,
    on_push: Option<Function>,
    on_heartbeat: Option<Function>,
    on_close: Option<Function>,
    timer: Option<i32>,
    handlers: Option<Handlers>,
    /// Keeps the client alive while its connection is (the page may drop its reference).
    me: Option<Rc<RefCell<Inner>>>,
}

fn now() -> Time {
    Time::from_unix_millis(js_sys::Date::now() as u64)
}

fn seed() -> Result<[u8; 32], JsError> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| JsError::new(&format!("no randomness: {e}")))?;
    Ok(seed)
}

fn window() -> Result<web_sys::Window, JsError> {
    web_sys::window().ok_or_else(|| JsError::new("no window"))
}

/// An optional field of the options object.
fn option(options: &JsValue, name: &str) -> Option<JsValue> {
    if !options.is_object() {
        return None;
    }
    Reflect::get(options, &JsValue::from_str(name))
        .ok()
        .filter(|v| !v.is_undefined() && !v.is_null())
}

fn key(options: &JsValue, name: &str) -> Option<Vec<u8>> {
    option(options, name).map(|v| Uint8Array::new(&v).to_vec())
}

fn error(kind: &str, message: &str) -> JsValue {
    let e = js_sys::Error::new(message);
    let _ = Reflect::set(&e, &"kind".into(), &kind.into());
    e.into()
}

fn request_error(e: &RequestError) -> JsValue {
    let kind = match e {
        RequestError::Failed { .. } => "failed",
        RequestError::Timeout => "timeout",
        RequestError::ConnectionClosed | RequestError::Closed => "closed",
        RequestError::NotConnected => "not-connected",
        _ => "error",
    };
    match e {
        RequestError::Failed {
            module,
            seq,
            message,
        } => {
            let e = error(kind, message);
            let _ = Reflect::set(&e, &"module".into(), &(*module).into());
            let _ = Reflect::set(&e, &"seq".into(), &(*seq).into());
            e
        }
        other => error(kind, &other.to_string()),
    }
}

fn packet(p: &Packet) -> JsValue {
    let o = Object::new();
    let set = |k: &str, v: JsValue| {
        let _ = Reflect::set(&o, &k.into(), &v);
    };
    set("module", p.r#mod.into());
    set("seq", p.seq.into());
    set("obj", (p.obj as f64).into());
    set("index", p.index.into());
    set("dataVersion", (p.data_version as f64).into());
    set("data", Uint8Array::from(p.data.as_ref()).into());
    o.into()
}

#[wasm_bindgen]
impl JanusClient {
    /// Opens a WebSocket to `url` and handshakes with `token`; resolves to the client once the
    /// session is established, rejects with why it could not be.
    pub fn connect(url: &str, token: &str, options: JsValue) -> Result<Promise, JsError> {
        let keys = match key(&options, "clientCertSeed") {
            Some(seed) => Some(
                keys_from_bytes(&seed, key(&options, "serverCertKey").as_deref())
                    .map_err(|e| JsError::new(&e.to_string()))?,
            ),
            None => None,
        };
        let mut config = Config::new(Endpoint::WebSocket(url.to_owned()), keys);
        if let Some(ms) = option(&options, "heartbeatMs").and_then(|v| v.as_f64()) {
            config.heartbeat_interval =
                (ms > 0.0).then(|| core::time::Duration::from_millis(ms as u64));
        }
        if let Some(ms) = option(&options, "requestTimeoutMs").and_then(|v| v.as_f64()) {
            config.request_timeout = core::time::Duration::from_millis(ms as u64);
        }
        let ws = WebSocket::new(url).map_err(|e| JsError::new(&format!("{e:?}")))?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let inner = Rc::new(RefCell::new(Inner {
            engine: Engine::new(),
            ws: ws.clone(),
            config: config.session(token.to_owned()),
            connecting: None,
            on_push: None,
            on_heartbeat: None,
            on_close: None,
            timer: None,
            handlers: None,
            me: None,
        }));
        let weak = Rc::downgrade(&inner);
        let on = |f: fn(&Rc<RefCell<Inner>>)| {
            let weak = weak.clone();
            move || {
                if let Some(inner) = weak.upgrade() {
                    f(&inner);
                }
            }
        };
        let open = Closure::<dyn FnMut()>::new(on(Inner::opened));
        let timer = Closure::<dyn FnMut()>::new(on(Inner::tick));
        let weak_message = weak.clone();
        let message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            if let Some(inner) = weak_message.upgrade() {
                Inner::received(&inner, &e);
            }
        });
        let weak_close = weak.clone();
        let close = Closure::<dyn FnMut(CloseEvent)>::new(move |e: CloseEvent| {
            if let Some(inner) = weak_close.upgrade() {
                let reason = format!("WebSocket closed ({} {})", e.code(), e.reason());
                Inner::lost(&inner, Disconnect::Transport(reason));
            }
        });
        ws.set_onopen(Some(open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(close.as_ref().unchecked_ref()));
        let promise = Promise::new(&mut |resolve, reject| {
            inner.borrow_mut().connecting = Some((resolve, reject));
        });
        {
            let mut me = inner.borrow_mut();
            me.handlers = Some(Handlers {
                _open: open,
                _message: message,
                _close: close,
                timer,
            });
            me.me = Some(Rc::clone(&inner));
        }
        Ok(promise)
    }

    /// Sends a request; the promise resolves to its reply or rejects with an `Error` whose
    /// `kind` says why (see the crate docs).
    pub fn request(&self, module: i32, seq: i32, data: &[u8]) -> Promise {
        let inner = Rc::clone(&self.inner);
        Promise::new(&mut |resolve, reject| {
            let out = Outgoing {
                module,
                seq,
                data: Bytes::copy_from_slice(data),
                ..Default::default()
            };
            let sent = inner
                .borrow_mut()
                .engine
                .send(now(), out, (resolve, reject));
            match sent {
                Ok(_) => Inner::settle(&inner),
                Err(((_, reject), e)) => {
                    let _ = reject.call1(&JsValue::NULL, &request_error(&e));
                }
            }
        })
    }

    /// `callback(packet)` for every push (index 0).
    #[wasm_bindgen(js_name = onPush)]
    pub fn on_push(&self, callback: Function) {
        self.inner.borrow_mut().on_push = Some(callback);
    }

    /// `callback({ serverTime, code })` for every answered heartbeat (code 1: succeeded).
    #[wasm_bindgen(js_name = onHeartbeat)]
    pub fn on_heartbeat(&self, callback: Function) {
        self.inner.borrow_mut().on_heartbeat = Some(callback);
    }

    /// `callback(reason)` once, when the connection ends (`reason` is a string; a logout names
    /// its code).
    #[wasm_bindgen(js_name = onClose)]
    pub fn on_close(&self, callback: Function) {
        self.inner.borrow_mut().on_close = Some(callback);
    }

    /// Whether the session is established.
    #[wasm_bindgen(getter)]
    pub fn connected(&self) -> bool {
        self.inner.borrow().engine.is_established()
    }

    /// Closes the connection; requests in flight reject with kind `closed`.
    pub fn close(&self) {
        Inner::lost(&self.inner, Disconnect::Closed);
    }
}

impl Inner {
    fn opened(inner: &Rc<RefCell<Inner>>) {
        let started = seed().map(|seed| {
            let mut me = inner.borrow_mut();
            let config = me.config.clone();
            me.engine.start(&config, now(), seed);
        });
        if started.is_err() {
            Inner::lost(inner, Disconnect::Transport("no randomness".into()));
            return;
        }
        Inner::settle(inner);
    }

    fn received(inner: &Rc<RefCell<Inner>>, e: &MessageEvent) {
        let Ok(buffer) = e.data().dyn_into::<js_sys::ArrayBuffer>() else {
            Inner::lost(
                inner,
                Disconnect::Transport("a text message from the gateway".into()),
            );
            return;
        };
        let message = Uint8Array::new(&buffer).to_vec();
        // One frame per message; bytes after it are ignored, as the gateway ignores them.
        let frame = janus_core::frame::frame_len(&message)
            .and_then(|end| message.get(..end))
            .unwrap_or(&message);
        inner.borrow_mut().engine.handle_bytes(now(), frame);
        Inner::settle(inner);
    }

    fn tick(inner: &Rc<RefCell<Inner>>) {
        {
            let mut me = inner.borrow_mut();
            me.timer = None;
            me.engine.handle_timeout(now());
        }
        Inner::settle(inner);
    }

    fn lost(inner: &Rc<RefCell<Inner>>, reason: Disconnect) {
        inner.borrow_mut().engine.lost(reason);
        Inner::settle(inner);
    }

    /// After every input: write what the engine queued, re-arm the timer, and hand the outputs
    /// to JavaScript, outside the borrow (a callback may call back into the client).
    fn settle(inner: &Rc<RefCell<Inner>>) {
        let mut outputs = Vec::new();
        let mut connected = None;
        let mut ended = None;
        {
            let mut me = inner.borrow_mut();
            while let Some(bytes) = me.engine.poll_transmit() {
                for frame in Frames(bytes) {
                    if me.ws.send_with_u8_array(&frame).is_err() {
                        me.engine
                            .lost(Disconnect::Transport("WebSocket send failed".into()));
                        break;
                    }
                }
            }
            while let Some(out) = me.engine.poll() {
                match out {
                    Output::Event(Event::Connected { .. }) => connected = me.connecting.take(),
                    Output::Ended(reason) => ended = Some((reason, me.connecting.take())),
                    other => outputs.push(other),
                }
            }
            me.arm_timer();
            if ended.is_some() {
                me.release();
            }
        }
        let (on_push, on_heartbeat, on_close) = {
            let me = inner.borrow();
            (
                me.on_push.clone(),
                me.on_heartbeat.clone(),
                me.on_close.clone(),
            )
        };
        if let Some((resolve, _)) = connected {
            let client = JanusClient {
                inner: Rc::clone(inner),
            };
            let _ = resolve.call1(&JsValue::NULL, &client.into());
        }
        for out in outputs {
            match out {
                Output::Answer((resolve, reject), result) => {
                    let _ = match result {
                        Ok(p) => resolve.call1(&JsValue::NULL, &packet(&p)),
                        Err(e) => reject.call1(&JsValue::NULL, &request_error(&e)),
                    };
                }
                Output::Event(Event::Push(p)) => {
                    if let Some(f) = &on_push {
                        let _ = f.call1(&JsValue::NULL, &packet(&p));
                    }
                }
                Output::Event(Event::Heartbeat { server_time, code }) => {
                    if let Some(f) = &on_heartbeat {
                        let o = Object::new();
                        let _ =
                            Reflect::set(&o, &"serverTime".into(), &(server_time as f64).into());
                        let _ = Reflect::set(&o, &"code".into(), &(code as i32).into());
                        let _ = f.call1(&JsValue::NULL, &o);
                    }
                }
                _ => {}
            }
        }
        if let Some((reason, connecting)) = ended {
            let text = match reason.logout() {
                Some(code) => format!("logged out: {code:?}"),
                None => reason.to_string(),
            };
            match connecting {
                Some((_, reject)) => {
                    let _ = reject.call1(&JsValue::NULL, &error("closed", &text));
                }
                None => {
                    if let Some(f) = &on_close {
                        let _ = f.call1(&JsValue::NULL, &text.into());
                    }
                }
            }
        }
    }

    /// Re-arms the browser timer for the engine's next deadline.
    fn arm_timer(&mut self) {
        let Ok(window) = window() else {
            return;
        };
        if let Some(id) = self.timer.take() {
            window.clear_timeout_with_handle(id);
        }
        let (Some(deadline), Some(handlers)) = (self.engine.poll_timeout(), &self.handlers) else {
            return;
        };
        let wait = deadline.saturating_since(now()).as_millis();
        let wait = i32::try_from(wait).unwrap_or(i32::MAX);
        self.timer = window
            .set_timeout_with_callback_and_timeout_and_arguments_0(
                handlers.timer.as_ref().unchecked_ref(),
                wait,
            )
            .ok();
    }

    /// The connection is over: detach from the socket, close it, and let go of the handlers
    /// (after this turn of the event loop: one of them may be running now).
    fn release(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let _ = self.ws.close();
        if let (Ok(window), Some(id)) = (window(), self.timer.take()) {
            window.clear_timeout_with_handle(id);
        }
        if let (Some(handlers), Ok(window)) = (self.handlers.take(), window()) {
            let drop_later = Closure::once_into_js(move || drop(handlers));
            let _ = window.set_timeout_with_callback_and_timeout_and_arguments_0(
                drop_later.unchecked_ref(),
                0,
            );
        }
        let me = self.me.take();
        // Dropped at the end of the current call stack at the latest: `settle` holds its own Rc.
        drop(me);
    }
}

/// Test helpers exported for the example page (not part of the client API).
#[wasm_bindgen(js_name = hexToBytes)]
pub fn hex_to_bytes(hex: &str) -> Uint8Array {
    let digits: Vec<u8> = hex
        .chars()
        .filter_map(|c| c.to_digit(16))
        .filter_map(|d| u8::try_from(d).ok())
        .collect();
    let bytes: Vec<u8> = digits
        .chunks_exact(2)
        .map(|pair| match pair {
            [hi, lo] => hi << 4 | lo,
            _ => 0,
        })
        .collect();
    Uint8Array::from(bytes.as_slice())
}
