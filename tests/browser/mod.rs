//! Headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`:
//! JSON messages ended by NUL on fds 3 and 4), for the dashboard's browser tests. No
//! websocket and no crate: a command is one JSON line, an answer carries its id, and every
//! event is kept so a test can ask which console errors a page raised.
//!
//! Debian's `chromium` (installed by scripts/setup.sh) is required; a test fails, never
//! skips, without it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::io::FromRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Where Debian puts the browser.
const CHROMIUM: &str = "/usr/bin/chromium";

type Waiters = Arc<Mutex<HashMap<u64, Sender<Value>>>>;

/// A running headless Chromium with one page attached.
pub struct Browser {
    child: Child,
    commands: File,
    waiters: Waiters,
    events: Arc<Mutex<Vec<Value>>>,
    next_id: u64,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium and opens a blank page of `width` x `height` CSS pixels.
    pub fn launch(width: u32, height: u32) -> Browser {
        let binary = std::env::var("FLOW_TEST_CHROMIUM").unwrap_or_else(|_| CHROMIUM.to_string());
        assert!(
            Path::new(&binary).exists(),
            "Chromium is missing at `{binary}`: run `scripts/setup.sh` (it installs Debian's `chromium`)"
        );
        let profile = tempfile::tempdir().expect("profile dir");
        let (to_browser_read, to_browser_write) = pipe();
        let (from_browser_read, from_browser_write) = pipe();
        let mut command = Command::new(&binary);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
                &format!("--user-data-dir={}", profile.path().display()),
                &format!("--window-size={width},{height}"),
                "about:blank",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: between fork and exec only async-signal-safe calls (dup2, fcntl, close).
        unsafe {
            command.pre_exec(move || {
                // Move both ends above 4 first so the dup2s below cannot clobber each other.
                let read = libc::fcntl(to_browser_read, libc::F_DUPFD, 10);
                let write = libc::fcntl(from_browser_write, libc::F_DUPFD, 10);
                if read < 0 || write < 0 || libc::dup2(read, 3) < 0 || libc::dup2(write, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("start chromium");
        // SAFETY: these fds came from pipe() and are owned here alone.
        unsafe {
            libc::close(to_browser_read);
            libc::close(from_browser_write);
        }
        let commands = unsafe { File::from_raw_fd(to_browser_write) };
        let answers = unsafe { File::from_raw_fd(from_browser_read) };
        let waiters: Waiters = Arc::default();
        let events: Arc<Mutex<Vec<Value>>> = Arc::default();
        {
            let waiters = Arc::clone(&waiters);
            let events = Arc::clone(&events);
            std::thread::spawn(move || read_messages(answers, waiters, events));
        }
        let mut browser = Browser {
            child,
            commands,
            waiters,
            events,
            next_id: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = browser.call(None, "Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().expect("targetId").to_string();
        let attached = browser.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        browser.session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string();
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            browser.send(domain, json!({}));
        }
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
        browser
    }

    /// A command to the page's session; panics with the browser's message on an error.
    pub fn send(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.call(Some(&session), method, params)
    }

    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.try_call(session, method, params)
            .unwrap_or_else(|error| panic!("chromium refused `{method}`: {error}"))
    }

    /// The answer, or the browser's error (e.g. a context destroyed by a navigation).
    fn try_call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let (sender, receiver): (Sender<Value>, Receiver<Value>) = channel();
        self.waiters.lock().unwrap().insert(id, sender);
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.commands.write_all(&bytes).expect("write to chromium");
        let answer = receiver
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("chromium did not answer `{method}` within 60 s"));
        match answer.get("error") {
            Some(error) => Err(error.clone()),
            None => Ok(answer["result"].clone()),
        }
    }

    /// Loads `url` and waits until the document and its deferred scripts are done.
    pub fn goto(&mut self, url: &str) {
        self.eval("window.__flowMarker = 1");
        self.send("Page.navigate", json!({"url": url}));
        self.wait_for(
            "window.__flowMarker === undefined && document.readyState === 'complete'",
            &format!("`{url}` to load"),
        );
    }

    /// Evaluates `expression` in the page (promises awaited) and returns its value.
    pub fn eval(&mut self, expression: &str) -> Value {
        let result = self.send(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(details) = result.get("exceptionDetails") {
            panic!("`{expression}` threw in the page: {details}");
        }
        result["result"]["value"].clone()
    }

    /// Waits up to 30 s until `expression` is truthy; `what` names it in the failure.
    pub fn wait_for(&mut self, expression: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let session = self.session.clone();
        loop {
            // A navigation in progress may destroy the context mid-call: that is a "no".
            let value = self.try_call(
                Some(&session),
                "Runtime.evaluate",
                json!({"expression": format!("!!({expression})"), "returnByValue": true}),
            );
            if matches!(value, Ok(ref v) if v["result"]["value"] == json!(true)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} (`{expression}`)"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Clicks the middle of the first element matching `selector` with the mouse, as a
    /// user would (scrolled into view first).
    pub fn click(&mut self, selector: &str) {
        let point = self.eval(&format!(
            "(() => {{ const e = document.querySelector({s}); if (!e) return null; e.scrollIntoView({{block: 'center'}}); \
             const r = e.getBoundingClientRect(); window.__flowMarker = 1; return [r.left + r.width / 2, r.top + r.height / 2]; }})()",
            s = json!(selector)
        ));
        let Some([x, y]) = point
            .as_array()
            .map(|p| [p[0].as_f64().unwrap(), p[1].as_f64().unwrap()])
        else {
            panic!("no element matches `{selector}`");
        };
        for kind in ["mousePressed", "mouseReleased"] {
            self.send(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "buttons": 1, "clickCount": 1}),
            );
        }
    }

    /// Clicks `selector` and waits for the navigation it starts.
    pub fn click_and_wait(&mut self, selector: &str) {
        self.click(selector);
        self.wait_for(
            "window.__flowMarker === undefined && document.readyState === 'complete'",
            &format!("the page opened by clicking `{selector}`"),
        );
    }

    /// A real mouse drag from `(x0, y)` to `(x1, y)` in page coordinates.
    pub fn drag(&mut self, x0: f64, x1: f64, y: f64) {
        for (kind, x, buttons) in [
            ("mousePressed", x0, 1),
            ("mouseMoved", (x0 + x1) / 2.0, 1),
            ("mouseMoved", x1, 1),
            ("mouseReleased", x1, 0),
        ] {
            self.send(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "buttons": buttons, "clickCount": 1}),
            );
        }
    }

    /// Makes the viewport `width` x `height` CSS pixels.
    pub fn resize(&mut self, width: u32, height: u32) {
        self.send(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
    }

    /// Saves a PNG of the whole page (not only the viewport) to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        let shot = self.send(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        let data = shot["data"].as_str().expect("screenshot data");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, decode_base64(data)).unwrap();
    }

    /// Console errors, uncaught exceptions and failed loads seen so far, as text.
    pub fn console_errors(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|event| {
                let params = &event["params"];
                match event["method"].as_str()? {
                    "Runtime.consoleAPICalled" if params["type"] == "error" => {
                        Some(format!("console.error: {}", params["args"]))
                    }
                    "Runtime.exceptionThrown" => {
                        Some(format!("exception: {}", params["exceptionDetails"]))
                    }
                    "Log.entryAdded" if params["entry"]["level"] == "error" => Some(format!(
                        "log: {} {}",
                        params["entry"]["text"], params["entry"]["url"]
                    )),
                    _ => None,
                }
            })
            .collect()
    }

    /// Forgets the events seen so far (after a page that is meant to show an error).
    pub fn clear_events(&self) {
        self.events.lock().unwrap().clear();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Splits the browser's output on NUL, hands answers to their waiters and keeps events.
fn read_messages(answers: File, waiters: Waiters, events: Arc<Mutex<Vec<Value>>>) {
    let mut reader = BufReader::new(answers);
    loop {
        let mut buffer = Vec::new();
        match reader.read_until(0, &mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if buffer.last() == Some(&0) {
            buffer.pop();
        }
        let Ok(message) = serde_json::from_slice::<Value>(&buffer) else {
            continue;
        };
        match message["id"].as_u64() {
            Some(id) => {
                if let Some(waiter) = waiters.lock().unwrap().remove(&id) {
                    let _ = waiter.send(message);
                }
            }
            None => events.lock().unwrap().push(message),
        }
    }
}

fn pipe() -> (i32, i32) {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe() writes.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe: {}", std::io::Error::last_os_error());
    (fds[0], fds[1])
}

fn decode_base64(text: &str) -> Vec<u8> {
    let value = |byte: u8| -> u32 {
        match byte {
            b'A'..=b'Z' => (byte - b'A') as u32,
            b'a'..=b'z' => (byte - b'a' + 26) as u32,
            b'0'..=b'9' => (byte - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {byte}"),
        }
    };
    let bytes: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let n_pad = chunk.iter().filter(|&&b| b == b'=').count();
        let mut word = 0u32;
        for (i, &byte) in chunk.iter().enumerate() {
            word |= if byte == b'=' { 0 } else { value(byte) } << (18 - 6 * i);
        }
        let decoded = [(word >> 16) as u8, (word >> 8) as u8, word as u8];
        out.extend_from_slice(&decoded[..3 - n_pad]);
    }
    out
}

/// Where the tests leave their screenshots: `<target>/ui-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|target| target.join("ui-screenshots"))
        .unwrap_or_else(|| PathBuf::from("ui-screenshots"))
}
