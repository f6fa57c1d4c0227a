//! A real headless Chromium for the tests that look at web pages (the monitor's dashboard,
//! NEMO's own pages).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{HarnessError, find_binary};

/// The Chromium binary: `chromium`, `chromium-browser`, `google-chrome` or
/// `google-chrome-stable`, the first found.
///
/// ```no_run
/// let chromium = nemo_testkit::browser::chromium()?;
/// println!("{}", chromium.display());
/// # Ok::<(), nemo_testkit::HarnessError>(())
/// ```
pub fn chromium() -> Result<PathBuf, HarnessError> {
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .into_iter()
    .find_map(find_binary)
    .ok_or(HarnessError::MissingBinary("chromium", "chromium"))
}

/// The flags for a headless Chromium that talks to nothing but the page: no sandbox (tests
/// may run as root), no GPU, no background networking, sync or component updates, and a
/// fresh profile in `profile`.
///
/// ```
/// let args = nemo_testkit::browser::headless_args(std::path::Path::new("/tmp/p"));
/// assert!(args.contains(&"--headless".to_string()));
/// ```
pub fn headless_args(profile: &Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--no-first-run",
        "--mute-audio",
    ]
    .into_iter()
    .map(String::from)
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

/// Load `url` in a headless Chromium and return the DOM once the page is idle (scripts run,
/// at most `budget_ms` of virtual time), or an error if Chromium fails or takes longer than
/// `limit`.
///
/// ```no_run
/// let dom = nemo_testkit::browser::dump_dom(
///     "http://127.0.0.1:8000/",
///     2000,
///     std::time::Duration::from_secs(60),
/// )?;
/// assert!(dom.contains("<body"));
/// # Ok::<(), nemo_testkit::HarnessError>(())
/// ```
pub fn dump_dom(url: &str, budget_ms: u32, limit: Duration) -> Result<String, HarnessError> {
    let browser = chromium()?;
    let profile = tempfile::tempdir()?;
    let mut child = Command::new(&browser)
        .args(headless_args(profile.path()))
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .arg("--dump-dom")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut out = child
        .stdout
        .take()
        .ok_or_else(|| HarnessError::Browser("no stdout".into()))?;
    let mut err = child
        .stderr
        .take()
        .ok_or_else(|| HarnessError::Browser("no stderr".into()))?;
    let reader = std::thread::spawn(move || {
        let mut dom = String::new();
        let _ = out.read_to_string(&mut dom);
        dom
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HarnessError::Browser(format!(
                "{} did not finish loading {url} within {} s",
                browser.display(),
                limit.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let dom = reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    if !status.success() || dom.is_empty() {
        return Err(HarnessError::Browser(format!(
            "{} {url}: {status}, {} bytes of DOM; stderr:\n{stderr}",
            browser.display(),
            dom.len()
        )));
    }
    Ok(dom)
}
