//! A real browser for the status page's tests: headless Chromium driven
//! through chromedriver's W3C WebDriver API (Debian's `chromium` and
//! `chromium-driver`, which `scripts/test.sh` installs), over the tests'
//! small HTTP client.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::http::request;

/// WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const CALL: Duration = Duration::from_secs(30);

/// A chromedriver process with one browser session.
pub struct Browser {
    driver: Child,
    addr: String,
    session: String,
}

/// An element of the page shown.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver and a headless Chromium session, with its log in
    /// `log`.
    pub async fn start(log: &Path) -> Result<Browser, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port for chromedriver: {e}"))?
            .port();
        let log_file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            // A group of its own, which the browser joins: dropping the
            // Browser ends both.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| {
                format!("cannot start chromedriver (Debian's chromium-driver; scripts/test.sh installs it): {e}")
            })?;
        let mut browser = Browser {
            driver,
            addr: format!("127.0.0.1:{port}"),
            session: String::new(),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(answer) = request(&browser.addr, "GET", "/status", &[], "", CALL).await
                && answer.status == 200
            {
                break;
            }
            if std::time::Instant::now() > deadline {
                return Err("chromedriver did not answer within 20 s".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1400,1000"],
            },
        }}});
        let created = browser.call("POST", "/session", capabilities).await?;
        browser.session = created["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no session id in {created}"))?
            .to_string();
        Ok(browser)
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> Result<Value, String> {
        let text = match body {
            Value::Null => String::new(),
            body => body.to_string(),
        };
        let answer = request(
            &self.addr,
            method,
            path,
            &[("Content-Type", "application/json")],
            &text,
            CALL,
        )
        .await?;
        let reply: Value =
            serde_json::from_str(&answer.body).map_err(|e| format!("{method} {path}: {e} in {}", answer.body))?;
        if answer.status != 200 {
            return Err(format!("{method} {path}: {} {}", answer.status, reply["value"]));
        }
        Ok(reply["value"].clone())
    }

    fn at(&self, tail: &str) -> String {
        format!("/session/{}{tail}", self.session)
    }

    /// Opens `url` and waits for it to load.
    pub async fn open(&self, url: &str) -> Result<(), String> {
        self.call("POST", &self.at("/url"), json!({"url": url}))
            .await
            .map(|_| ())
    }

    /// The address shown.
    pub async fn url(&self) -> Result<String, String> {
        let url = self.call("GET", &self.at("/url"), Value::Null).await?;
        Ok(url.as_str().unwrap_or_default().to_string())
    }

    /// The first element `css` selects, if any.
    pub async fn find(&self, css: &str) -> Result<Option<Element>, String> {
        let found = self
            .call(
                "POST",
                &self.at("/elements"),
                json!({"using": "css selector", "value": css}),
            )
            .await?;
        Ok(found
            .as_array()
            .and_then(|all| all.first())
            .and_then(|e| e[ELEMENT].as_str())
            .map(|id| Element(id.to_string())))
    }

    /// Calls `tail` (after `/element/ID`) on the first element `css`
    /// selects. The status page replaces its live part as it changes, so an
    /// element found may be gone a moment later ("stale"): then it is found
    /// again, a few times.
    async fn on_element(&self, css: &str, method: &str, tail: &str, body: Value) -> Result<Option<Value>, String> {
        let mut last = String::new();
        for _ in 0..5 {
            let Some(element) = self.find(css).await? else {
                return Ok(None);
            };
            match self
                .call(method, &self.at(&format!("/element/{}{tail}", element.0)), body.clone())
                .await
            {
                Ok(value) => return Ok(Some(value)),
                Err(e) if e.contains("stale element") => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// The text of the first element `css` selects ("" when none does).
    pub async fn text(&self, css: &str) -> Result<String, String> {
        let text = self.on_element(css, "GET", "/text", Value::Null).await?;
        Ok(text.and_then(|t| t.as_str().map(str::to_string)).unwrap_or_default())
    }

    /// Clicks the first element `css` selects.
    pub async fn click(&self, css: &str) -> Result<(), String> {
        self.on_element(css, "POST", "/click", json!({}))
            .await?
            .map(|_| ())
            .ok_or_else(|| format!("nothing on the page matches {css}"))
    }

    /// Types `text` into the first element `css` selects.
    pub async fn type_into(&self, css: &str, text: &str) -> Result<(), String> {
        self.on_element(css, "POST", "/value", json!({"text": text}))
            .await?
            .map(|_| ())
            .ok_or_else(|| format!("nothing on the page matches {css}"))
    }

    /// Runs `script` in the page and returns what it returns.
    pub async fn eval(&self, script: &str) -> Result<Value, String> {
        self.call("POST", &self.at("/execute/sync"), json!({"script": script, "args": []}))
            .await
    }

    /// Saves what the browser shows as a PNG at `path`.
    pub async fn screenshot(&self, path: &Path) -> Result<(), String> {
        use base64::Engine;
        let shot = self.call("GET", &self.at("/screenshot"), Value::Null).await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot.as_str().unwrap_or_default())
            .map_err(|e| format!("the screenshot is not base64: {e}"))?;
        std::fs::write(path, png).map_err(|e| format!("{}: {e}", path.display()))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the session (Chromium with it), then the driver's whole
        // group, in case the session did not end.
        if !self.session.is_empty()
            && let Ok(mut stream) = std::net::TcpStream::connect(&self.addr)
        {
            use std::io::{Read, Write};
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let path = format!("/session/{}", self.session);
            let _ = write!(
                stream,
                "DELETE {path} HTTP/1.0\r\nHost: {}\r\nContent-Length: 0\r\n\r\n",
                self.addr
            );
            let _ = stream.read_to_end(&mut Vec::new());
        }
        let group = nix::unistd::Pid::from_raw(self.driver.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.driver.wait();
    }
}
