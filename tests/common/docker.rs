//! Helpers for tests against a real Docker engine: the shared engine (or a private dockerd
//! a test may stop, restart or start late), containers removed when dropped, and the
//! lines the shipper wrote, compared with what Docker itself holds (`docker logs`).
//!
//! Without an engine the tests skip with a printed note, except under `CI`, where they fail
//! (scripts/docker-setup.sh sets the engine and the image up).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The image scripts/docker-setup.sh imports: busybox-static as a root filesystem.
pub const IMAGE: &str = "lc-busybox";

/// Whether the engine at `host` (None: the default) answers.
fn answers(host: Option<&str>) -> bool {
    let mut command = Command::new("docker");
    if let Some(host) = host {
        command.args(["-H", host]);
    }
    command
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether the tests can run: an engine answers and has the image. Under `CI` a missing engine
/// fails the test; elsewhere it prints a note and the test returns.
pub fn available() -> bool {
    let ok = answers(None)
        && Command::new("docker")
            .args(["image", "inspect", IMAGE])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but no Docker engine with image {IMAGE} answers: run scripts/docker-setup.sh"
        );
        eprintln!(
            "note: no Docker engine with image {IMAGE}; skipping (scripts/docker-setup.sh sets one up)"
        );
    }
    ok
}

/// A name unique to this test process and call, for containers.
pub fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "lc-test-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `docker [-H host] args`, returning stdout; panics with stderr on failure.
pub fn docker(host: Option<&str>, args: &[&str]) -> String {
    let mut command = Command::new("docker");
    if let Some(host) = host {
        command.args(["-H", host]);
    }
    let output = command.args(args).output().expect("run docker");
    assert!(
        output.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A container, removed (`docker rm -f`) when dropped.
pub struct Container {
    pub name: String,
    host: Option<String>,
}

impl Container {
    /// `docker run -d --name NAME [extra] lc-busybox sh -c SCRIPT`.
    pub fn run(host: Option<&str>, name: &str, extra: &[&str], script: &str) -> Self {
        let mut args = vec!["run", "-d", "--name", name, "--network", "none"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[IMAGE, "sh", "-c", script]);
        docker(host, &args);
        Self {
            name: name.to_string(),
            host: host.map(str::to_string),
        }
    }

    /// What Docker holds of the container's output: (stdout lines, stderr lines).
    pub fn logs(&self) -> (Vec<String>, Vec<String>) {
        let mut command = Command::new("docker");
        if let Some(host) = &self.host {
            command.args(["-H", host]);
        }
        let output = command
            .args(["logs", &self.name])
            .output()
            .expect("docker logs");
        let lines = |bytes: &[u8]| {
            String::from_utf8_lossy(bytes)
                .lines()
                .map(|l| l.trim_end_matches('\r').to_string())
                .collect()
        };
        (lines(&output.stdout), lines(&output.stderr))
    }

    /// Waits until the container has exited.
    pub fn wait_exit(&self) {
        docker(self.host.as_deref(), &["wait", &self.name]);
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let mut command = Command::new("docker");
        if let Some(host) = &self.host {
            command.args(["-H", host]);
        }
        let _ = command
            .args(["rm", "-f", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// One line of the file sink's output.
#[derive(Clone, Debug)]
pub struct Out {
    pub line: String,
    pub labels: BTreeMap<String, String>,
    pub timestamp: String,
}

/// The lines the shipper wrote to `path` (JSON lines of the file sink).
pub fn output(path: &Path) -> Vec<Out> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| Out {
            line: v["line"].as_str().unwrap_or_default().to_string(),
            labels: v["labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default(),
            timestamp: v["timestamp"].as_str().unwrap_or_default().to_string(),
        })
        .collect()
}

/// The lines written for `container` on `stream`, in order.
pub fn lines_of(out: &[Out], container: &str, stream: &str) -> Vec<String> {
    out.iter()
        .filter(|o| {
            o.labels.get("container").map(String::as_str) == Some(container)
                && o.labels.get("stream").map(String::as_str) == Some(stream)
        })
        .map(|o| o.line.clone())
        .collect()
}

/// Lines Docker holds that the shipper did not write (`missing`), and how many it wrote more
/// than once beyond what Docker holds (`duplicated`).
pub fn compare(expected: &[String], got: &[String]) -> (Vec<String>, usize) {
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for line in got {
        *counts.entry(line.as_str()).or_default() += 1;
    }
    let mut missing = Vec::new();
    for line in expected {
        match counts.get_mut(line.as_str()) {
            Some(n) if *n > 0 => *n -= 1,
            _ => missing.push(line.clone()),
        }
    }
    let duplicated = counts
        .values()
        .filter(|n| **n > 0)
        .map(|n| *n as usize)
        .sum();
    (missing, duplicated)
}

/// A dockerd of a test's own (socket, data and state under a temporary directory), so that a
/// test can stop, restart or start it late without disturbing the shared engine. The image is
/// copied in from the shared engine.
pub struct PrivateDockerd {
    pub dir: tempfile::TempDir,
    /// A bridge of its own: dockerd with `--bridge none` would delete the host's docker0.
    bridge: String,
    pub host: String,
    pub socket: PathBuf,
    child: std::sync::Mutex<Option<std::process::Child>>,
}

impl PrivateDockerd {
    /// Prepares the directory; the daemon is not running yet.
    pub fn prepare() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("lc-dockerd-")
            .tempdir_in("/tmp")
            .expect("temporary directory");
        let socket = dir.path().join("docker.sock");
        static N: AtomicU32 = AtomicU32::new(0);
        let n = (std::process::id() + N.fetch_add(1, Ordering::Relaxed) * 7) % 250;
        let bridge = format!("lcbr{n}");
        let _ = Command::new("ip")
            .args(["link", "del", &bridge])
            .stderr(Stdio::null())
            .status();
        let address = format!("10.213.{n}.1/24");
        for args in [
            vec!["link", "add", "name", bridge.as_str(), "type", "bridge"],
            vec!["addr", "add", address.as_str(), "dev", bridge.as_str()],
            vec!["link", "set", bridge.as_str(), "up"],
        ] {
            let ok = Command::new("ip")
                .args(&args)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "ip {args:?} failed");
        }
        Self {
            bridge,
            host: format!("unix://{}", socket.display()),
            socket,
            dir,
            child: std::sync::Mutex::new(None),
        }
    }

    /// Starts the daemon and waits until it answers; loads the image on the first start.
    pub fn start(&self) {
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("dockerd.log"))
            .expect("dockerd log");
        let child = Command::new("dockerd")
            .arg("--host")
            .arg(&self.host)
            .arg("--data-root")
            .arg(d.join("root"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .args([
                "--bridge",
                &self.bridge,
                "--iptables=false",
                "--ip-masq=false",
            ])
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start dockerd");
        *self.child.lock().unwrap() = Some(child);
        super::wait_for("the private dockerd", Duration::from_secs(60), || {
            answers(Some(&self.host)).then_some(())
        });
        let has_image = Command::new("docker")
            .args(["-H", &self.host, "image", "inspect", IMAGE])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !has_image {
            let status = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "docker save {IMAGE} | docker -H {} load",
                    self.host
                ))
                .stdout(Stdio::null())
                .status()
                .expect("copy the image");
            assert!(
                status.success(),
                "cannot copy {IMAGE} into the private dockerd"
            );
        }
    }

    /// Stops the daemon (SIGTERM, as an init system would) and waits until it is gone.
    pub fn stop(&self) {
        let Some(mut child) = self.child.lock().unwrap().take() else {
            return;
        };
        let pid = i32::try_from(child.id()).expect("pid fits i32");
        // SAFETY: kill(2) on the daemon this helper started; no memory effects.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let _ = child.wait();
    }
}

impl Drop for PrivateDockerd {
    fn drop(&mut self) {
        // Containers first, so the daemon leaves no mounts behind in the directory.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ids=$(docker -H {h} ps -aq); [ -z \"$ids\" ] || docker -H {h} rm -f $ids",
                h = self.host
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        self.stop();
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}
