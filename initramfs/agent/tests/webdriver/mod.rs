//! A small W3C WebDriver client over Debian's chromedriver and headless
//! Chromium (packages chromium and chromium-driver: their versions always
//! match, and nothing comes from PyPI or npm). It speaks the protocol's JSON
//! over HTTP with ureq, as the other tests speak to the agent.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: ureq::Agent,
    /// Where screenshots go.
    pub shots: PathBuf,
    /// Chromium's download directory (removed with the browser).
    pub downloads: PathBuf,
}

fn find_program(names: &[&str]) -> PathBuf {
    for name in names {
        for dir in ["/usr/bin", "/usr/lib/chromium", "/usr/local/bin"] {
            let path = Path::new(dir).join(name);
            if path.exists() {
                return path;
            }
        }
    }
    panic!("none of {names:?} is installed (apt-get install chromium chromium-driver)");
}

impl Browser {
    /// Headless Chromium at `width`×`height`; screenshots into `shots`.
    pub fn start(width: u32, height: u32, shots: &Path) -> Browser {
        let driver_bin = find_program(&["chromedriver"]);
        let chromium = find_program(&["chromium", "chromium-browser"]);
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let http = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(120)))
                .build(),
        );
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).call().is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer on {base}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::fs::create_dir_all(shots).unwrap();
        let downloads = std::env::temp_dir().join(format!("vireo-ui-downloads-{port}"));
        std::fs::create_dir_all(&downloads).unwrap();
        let mut browser = Browser {
            driver,
            base,
            session: String::new(),
            http,
            shots: shots.into(),
            downloads: downloads.clone(),
        };
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--no-first-run", format!("--window-size={width},{height}")],
                "prefs": {"download.default_directory": downloads,
                          "download.prompt_for_download": false},
            },
        }}});
        let answer = browser.command("POST", "/session", Some(caps));
        browser.session = answer["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        browser.resize(width, height);
        // Downloads saved without asking (the prefs alone do not do it in headless mode).
        browser.cdp(
            "Browser.setDownloadBehavior",
            json!({"behavior": "allow", "downloadPath": browser.downloads}),
        );
        browser
    }

    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_command(method, path, body)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_command(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let sent = match method {
            "GET" => self.http.get(&url).call(),
            "DELETE" => self.http.delete(&url).call(),
            _ => self
                .http
                .post(&url)
                .content_type("application/json")
                .send(&body.unwrap_or(json!({})).to_string()),
        };
        let mut answer = sent.map_err(|e| format!("webdriver {method} {path}: {e}"))?;
        let status = answer.status().as_u16();
        let text = answer
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status >= 300 {
            return Err(format!("webdriver {method} {path}: {status} {value}"));
        }
        Ok(value["value"].clone())
    }

    fn session_command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.command(method, &format!("/session/{}{path}", self.session), body)
    }

    /// A Chrome DevTools Protocol command (network blocking and the like).
    pub fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.session_command(
            "POST",
            "/goog/cdp/execute",
            Some(json!({"cmd": cmd, "params": params})),
        )
    }

    /// What the page fetched (name and HTTP status; 0 = no answer) and
    /// what it logged: for a failure's message.
    fn diagnostics(&self) -> String {
        let fetched = self.js(
            "return performance.getEntriesByType('resource').map(e => `${e.responseStatus} ${e.name}`).join('\\n')",
            json!([]),
        );
        let log = self
            .try_command(
                "POST",
                &format!("/session/{}/se/log", self.session),
                Some(json!({"type": "browser"})),
            )
            .unwrap_or_else(Value::String);
        format!(
            "fetched:\n{}\nconsole: {log}",
            fetched.as_str().unwrap_or("")
        )
    }

    pub fn resize(&self, width: u32, height: u32) {
        self.session_command(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }

    pub fn goto(&self, url: &str) {
        self.session_command("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub fn js(&self, script: &str, args: Value) -> Value {
        self.session_command(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Polls `condition` (an expression) until it is truthy; returns its value.
    pub fn wait(&self, what: &str, condition: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        let script =
            format!("try {{ return ({condition}) || null; }} catch (e) {{ return null; }}");
        loop {
            let value = self.js(&script, json!([]));
            if !value.is_null() && value != json!(false) {
                return value;
            }
            if Instant::now() > deadline {
                let page = self.js("return document.body.innerText", json!([]));
                panic!(
                    "{what}: not within {limit:?}; the page says:\n{}\n{}",
                    page.as_str().unwrap_or(""),
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the element matching `css` and returns its WebDriver id.
    pub fn find(&self, css: &str) -> String {
        self.wait(
            &format!("element {css}"),
            &format!("document.querySelector({css:?})"),
            Duration::from_secs(15),
        );
        let found = self.session_command(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_string()
    }

    /// A real click (the browser's own input events) on `css`.
    pub fn click(&self, css: &str) {
        let id = self.find(css);
        self.session_command("POST", &format!("/element/{id}/click"), None);
    }

    /// Clicks the button or link under `scope` whose text is `text` (found
    /// again if the page redrew it between finding and clicking).
    pub fn click_text(&self, scope: &str, text: &str) {
        let cond = format!(
            "[...document.querySelectorAll('{scope} button, {scope} a')].find(b => b.textContent.trim() === {text:?})"
        );
        let mut last = String::new();
        for _ in 0..5 {
            self.wait(
                &format!("'{text}' in {scope}"),
                &cond,
                Duration::from_secs(15),
            );
            let script = json!({"script": format!("return {cond};"), "args": []});
            let found = self.session_command("POST", "/execute/sync", Some(script));
            let Some(id) = found[ELEMENT].as_str() else {
                continue;
            };
            match self.try_command(
                "POST",
                &format!("/session/{}/element/{id}/click", self.session),
                None,
            ) {
                Ok(_) => return,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("cannot click '{text}' in {scope}: {last}");
    }

    /// Types `text` into the field `css` (after clearing it).
    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.session_command("POST", &format!("/element/{id}/clear"), None);
        self.session_command(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Chooses the host file `path` in the file input `css`.
    pub fn choose_file(&self, css: &str, path: &Path) {
        let id = self.find(css);
        self.session_command(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": path.to_str().unwrap() })),
        );
    }

    pub fn text(&self, css: &str) -> String {
        self.js(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : ''",
            json!([css]),
        )
        .as_str()
        .unwrap_or("")
        .to_string()
    }

    /// Waits for the page's status line to say `label…: done`; panics on a
    /// failure it reports.
    pub fn action_done(&self, label: &str, limit: Duration) {
        let cond = format!(
            "(e => e && e.innerText.startsWith({label:?}) && (e.classList.contains('ok') || e.classList.contains('failed')) && e.className + ' ' + e.innerText)(document.querySelector('[data-testid=action-status]'))"
        );
        let seen = self.wait(&format!("{label} done"), &cond, limit);
        let seen = seen.as_str().unwrap_or("");
        assert!(seen.contains(" ok "), "{label}: {seen}");
    }

    /// The file Chromium saved as `name` in its download directory, once
    /// complete (no `.crdownload` left beside it).
    pub fn downloaded(&self, name: &str, limit: Duration) -> Vec<u8> {
        let path = self.downloads.join(name);
        let deadline = Instant::now() + limit;
        let partial = || {
            std::fs::read_dir(&self.downloads).unwrap().any(|e| {
                e.unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "crdownload")
            })
        };
        while !path.exists() || partial() {
            let dir: Vec<_> = std::fs::read_dir(&self.downloads).unwrap().collect();
            assert!(Instant::now() < deadline, "no download {name}: {dir:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
        std::fs::read(path).unwrap()
    }

    /// Saves a PNG of the window as `name`.png in the screenshot directory.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.session_command("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self
                .http
                .delete(format!("{}/session/{}", self.base, self.session))
                .call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.downloads);
    }
}
