//! A real browser for tests of what a user sees: headless Chromium driven
//! through chromedriver, one of each per [`Browser`], with the waits that
//! pages which render after the fact need.
//!
//! Chromium and chromedriver come from Debian's `chromium` and
//! `chromium-driver` (scripts/test installs them); without them a test
//! fails, never skips.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::time::Instant;

/// How long the helpers wait for a page to reach what they await.
pub const WAIT: Duration = Duration::from_secs(10);

/// How long chromedriver and Chromium may take to start: a cold Chromium on
/// a busy two-core machine takes seconds, not tens of them.
const START: Duration = Duration::from_secs(30);

/// How often the helpers look again.
const POLL: Duration = Duration::from_millis(100);

/// A desktop browser's viewport.
const DESKTOP: (u32, u32) = (1280, 900);

/// A headless Chromium with a profile of its own (no cookies, no storage
/// shared with any other `Browser`), stopped with its chromedriver when
/// dropped.
///
/// Two users side by side are two `Browser`s.
pub struct Browser {
    // Declared before the driver so that the session is let go before its
    // chromedriver is killed.
    client: Client,
    driver: Chromedriver,
    // Chromium's profile and chromedriver's log.
    _dir: tempfile::TempDir,
}

impl Browser {
    /// A browser with a desktop-sized (1280 × 900) viewport.
    pub async fn start() -> Browser {
        Self::start_with_size(DESKTOP.0, DESKTOP.1).await
    }

    /// A browser whose viewport (the page's part of the window) is `width` ×
    /// `height` CSS pixels, such as a phone's 390 × 844.
    pub async fn start_with_size(width: u32, height: u32) -> Browser {
        let chromium = installed("chromium", "chromium");
        let dir = tempfile::tempdir().expect("a directory for the browser's profile");
        let driver = Chromedriver::start(dir.path()).await;
        let profile = dir.path().join("profile");
        let mut capabilities = Capabilities::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless",
                    // Tests run as root in containers, where Chromium's
                    // sandbox cannot start.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--no-first-run",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        // Keeps the page's console for `console_errors`.
        capabilities.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(capabilities);
        let client = match tokio::time::timeout(START, builder.connect(&driver.url)).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => panic!(
                "chromedriver could not start {}: {e}\n{}",
                chromium.display(),
                driver.log()
            ),
            Err(_) => panic!(
                "chromedriver did not start {} within {START:?}\n{}",
                chromium.display(),
                driver.log()
            ),
        };
        let browser = Browser {
            client,
            driver,
            _dir: dir,
        };
        browser.set_viewport(width, height).await;
        browser
    }

    /// Makes the page's viewport `width` × `height`: `--window-size` sizes
    /// the window, of which headless Chromium keeps a part for a frame it
    /// does not draw.
    async fn set_viewport(&self, width: u32, height: u32) {
        let frame = self
            .eval("[outerWidth - innerWidth, outerHeight - innerHeight]")
            .await;
        let frame = |i: usize| {
            frame[i]
                .as_u64()
                .and_then(|px| u32::try_from(px).ok())
                .unwrap_or_else(|| panic!("the window's frame in pixels, not {frame}"))
        };
        self.client
            .set_window_size(width + frame(0), height + frame(1))
            .await
            .unwrap_or_else(|e| {
                panic!("resizing the window to a {width} × {height} viewport: {e}")
            });
        let viewport = self.eval("[innerWidth, innerHeight]").await;
        assert_eq!(
            viewport,
            json!([width, height]),
            "the viewport after resizing the window"
        );
    }

    /// The WebDriver client, for what the helpers do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens `url` and waits until it has loaded.
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    /// The path of the page shown now, such as `/login`.
    pub async fn current_path(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("asking the browser for its URL")
            .path()
            .to_owned()
    }

    /// The value of the JavaScript expression `script` in the page, such as
    /// `document.title`.
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(&format!("return ({script});"), Vec::new())
            .await
            .unwrap_or_else(|e| panic!("evaluating `{script}`: {e}"))
    }

    /// Calls `check` every 100 ms until it answers `Ok`, and answers that;
    /// after [`WAIT`] panics with `what` (what was awaited) and the last
    /// `Err` (what was seen instead).
    pub async fn wait_until<T>(
        &self,
        what: &str,
        mut check: impl AsyncFnMut() -> Result<T, String>,
    ) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            let seen = match check().await {
                Ok(value) => return value,
                Err(seen) => seen,
            };
            if Instant::now() >= deadline {
                let url = self.client.current_url().await.map(String::from);
                let url = url.unwrap_or_else(|e| format!("a page whose URL is unknown ({e})"));
                panic!("waited {WAIT:?} for {what} on {url}; saw {seen}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until an element matches the CSS selector `css`.
    pub async fn wait_for(&self, css: &str) -> Element {
        self.wait_until(&format!("an element matching `{css}`"), async || {
            self.find(css).await
        })
        .await
    }

    /// Waits until an element matching `css` has a text that contains
    /// `needle`, and answers that element.
    pub async fn wait_for_text(&self, css: &str, needle: &str) -> Element {
        let what = format!("an element matching `{css}` with a text containing {needle:?}");
        self.wait_until(&what, async || {
            let elements = self
                .client
                .find_all(Locator::Css(css))
                .await
                .map_err(|e| e.to_string())?;
            let mut texts = Vec::new();
            for element in elements {
                let text = element.text().await.map_err(|e| e.to_string())?;
                if text.contains(needle) {
                    return Ok(element);
                }
                texts.push(text);
            }
            Err(if texts.is_empty() {
                "no element matching it".to_owned()
            } else {
                format!("the texts {texts:?}")
            })
        })
        .await
    }

    /// The text of the first element matching `css`, once there is one.
    pub async fn text_of(&self, css: &str) -> String {
        let element = self.wait_for(css).await;
        element
            .text()
            .await
            .unwrap_or_else(|e| panic!("reading the text of `{css}`: {e}"))
    }

    /// Empties the field matching `css` and types `text` into it, once the
    /// field is there and takes input.
    pub async fn fill(&self, css: &str, text: &str) {
        self.wait_until(&format!("`{css}` to take input"), async || {
            let field = self.find(css).await?;
            field.clear().await.map_err(|e| e.to_string())?;
            field.send_keys(text).await.map_err(|e| e.to_string())
        })
        .await
    }

    /// Clicks the element matching `css`, once it is there and clickable
    /// (not hidden, disabled or covered).
    pub async fn click(&self, css: &str) {
        self.wait_until(&format!("`{css}` to take a click"), async || {
            let element = self.find(css).await?;
            element.click().await.map_err(|e| e.to_string())
        })
        .await
    }

    /// The errors the page reported on its console (and failed loads, which
    /// Chromium reports there too) since the previous call.
    pub async fn console_errors(&self) -> Vec<String> {
        // The legacy log endpoint, which chromedriver keeps beside the W3C
        // protocol: the protocol itself has no way to read the console.
        let session = self
            .client
            .session_id()
            .await
            .expect("asking for the WebDriver session's id")
            .expect("a WebDriver session");
        let url = format!("{}/session/{session}/se/log", self.driver.url);
        let answer: Value = reqwest::Client::new()
            .post(&url)
            .json(&json!({ "type": "browser" }))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .unwrap_or_else(|e| panic!("reading the browser's console from {url}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("reading the browser's console from {url}: {e}"));
        answer["value"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["level"] == "SEVERE")
            .filter_map(|entry| entry["message"].as_str())
            .map(str::to_owned)
            .collect()
    }

    /// Saves what the window shows as `<target dir>/screenshots/<name>.png`
    /// and answers that path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("taking the screenshot {name}: {e}"));
        let dir = target_dir().join("screenshots");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }

    async fn find(&self, css: &str) -> Result<Element, String> {
        self.client
            .find(Locator::Css(css))
            .await
            .map_err(|e| e.to_string())
    }
}

/// A chromedriver on a loopback port, killed with the Chromium it started
/// when dropped.
struct Chromedriver {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Chromedriver {
    /// Starts chromedriver with its log in `dir` and waits until it answers.
    async fn start(dir: &Path) -> Chromedriver {
        let program = installed("chromedriver", "chromium-driver");
        let port = crate::process::free_port();
        let log = dir.join("chromedriver.log");
        let output = File::create(&log).expect("creating chromedriver's log");
        let child = Command::new(&program)
            .arg(format!("--port={port}"))
            .stdout(output.try_clone().expect("chromedriver's log"))
            .stderr(output)
            // A group of its own, so that Chromium's processes go with it.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
        let mut driver = Chromedriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        driver.wait_until_ready().await;
        driver
    }

    async fn wait_until_ready(&mut self) {
        let status = format!("{}/status", self.url);
        let http = reqwest::Client::new();
        let deadline = Instant::now() + START;
        loop {
            if let Some(exit) = self.child.try_wait().expect("checking on chromedriver") {
                panic!(
                    "chromedriver exited ({exit}) before answering\n{}",
                    self.log()
                );
            }
            if let Ok(answer) = http.get(&status).send().await
                && answer.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer on {status} within {START:?}\n{}",
                self.log()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Its log so far, for failure messages.
    fn log(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        format!("--- chromedriver's log ---\n{log}")
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// `program`'s path on `PATH`; panics naming the Debian `package` that has
/// it when it is missing.
fn installed(program: &str, package: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{program} is not on PATH: browser tests need Debian's {package} \
                 (scripts/test installs it)"
            )
        })
}

/// Where the build's output goes: `$CARGO_TARGET_DIR`, else the workspace's
/// `target/`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("tests/ lives in the workspace")
                .join("target")
        })
}
