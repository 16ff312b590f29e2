//! Shared helpers for process-level tests: run the real binary with a configuration, talk to its
//! API, wait for conditions with a deadline, stop it with a signal.

#![allow(dead_code)]
// Test helpers: a failure here is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod docker;
pub mod loki;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};

/// The binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_log-capturer")
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// Polls `check` until it returns `Some` or `limit` passes; panics with `what` on timeout.
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One HTTP request from a test, on a small runtime of its own.
pub fn http(
    method: Method,
    url: &str,
    bearer: Option<&str>,
) -> Result<(StatusCode, String), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(log_capturer::client::request(method, url, bearer))
}

/// A running `log-capturer` process with its own directory and API port.
pub struct Instance {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl Instance {
    /// Writes `config` (YAML; `{dir}` and `{port}` are replaced) and starts `log-capturer run`.
    pub fn start(config: &str) -> Self {
        Self::start_with(config, &[], &[])
    }

    pub fn start_with(config: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut instance = Self::prepare(config);
        instance.spawn(args, env);
        instance
    }

    /// Creates the directory and config without starting the process (see [`Instance::spawn`]).
    pub fn prepare(config: &str) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = free_port();
        let config_path = dir.path().join("config.yaml");
        let instance = Self {
            config_path,
            port,
            child: None,
            dir,
        };
        instance.write_config(config);
        instance
    }

    /// Starts (or starts again) the process on the same directory, config and port.
    pub fn spawn(&mut self, args: &[&str], env: &[(&str, &str)]) {
        let mut command = Command::new(binary());
        command
            .arg("run")
            .arg("--config")
            .arg(&self.config_path)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(self.log_file("stdout.log")))
            .stderr(Stdio::from(self.log_file("stderr.log")));
        for (key, value) in env {
            command.env(key, value);
        }
        self.child = Some(command.spawn().expect("start log-capturer"));
        self.wait_ready();
    }

    /// Appends to a file in the instance directory: the process's output goes to files, not
    /// pipes, so a chatty process can never block on a full pipe.
    fn log_file(&self, name: &str) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(name))
            .expect("open log file")
    }

    /// Everything the process wrote to standard error, over all its runs.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits up to `limit` for the process to exit on its own; its exit status, or `None` while
    /// it still runs.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Checks how a shipper whose component panicked (`fault`, injected with `LC_TEST_FAULT`)
    /// ended: exit code 1, the log naming `component` and the fault, and the shutdown saying so.
    /// `status` is what [`Instance::wait_exit`] gave (`None`: it went on running).
    pub fn assert_stopped_by_panic(
        &self,
        status: Option<ExitStatus>,
        fault: &str,
        component: &str,
    ) {
        let stderr = self.stderr();
        let Some(status) = status else {
            panic!("the shipper went on running after {fault} panicked:\n{stderr}");
        };
        assert_eq!(status.code(), Some(1), "{stderr}");
        let (point, _) = fault.rsplit_once('@').unwrap_or((fault, ""));
        assert!(
            stderr.contains("A component panicked")
                && stderr.contains(&format!("component={component}"))
                && stderr.contains(&format!("fault injected at {point}"))
                && stderr.contains("Shutdown complete after a component failure."),
            "the log names the component and the fault: {stderr}"
        );
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Replaces `{dir}` and `{port}` in `config` and writes it to the config file.
    pub fn write_config(&self, config: &str) {
        let text = config
            .replace("{dir}", &self.dir.path().display().to_string())
            .replace("{port}", &self.port.to_string());
        std::fs::write(&self.config_path, text).expect("write config");
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn get(&self, path: &str) -> (StatusCode, String) {
        http(Method::GET, &self.url(path), None).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    pub fn post(&self, path: &str) -> (StatusCode, String) {
        http(Method::POST, &self.url(path), None).unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// A request with `Authorization: Bearer <token>`.
    pub fn request_with_token(
        &self,
        method: Method,
        path: &str,
        token: &str,
    ) -> (StatusCode, String) {
        http(method.clone(), &self.url(path), Some(token))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Descriptors the process has open now (`/proc/PID/fd`).
    pub fn open_fds(&self) -> usize {
        let pid = self.pid().expect("running child");
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|entries| entries.count())
            .unwrap_or(0)
    }

    fn wait_ready(&mut self) {
        let url = self.url("/ready");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((status, _)) = http(Method::GET, &url, None)
                && status == StatusCode::OK
            {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                panic!(
                    "log-capturer exited early with {status}:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "log-capturer did not become ready"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a signal to the process.
    pub fn signal(&self, signal: i32) {
        if let Some(child) = &self.child {
            let pid = i32::try_from(child.id()).expect("pid fits i32");
            // SAFETY: kill(2) with a pid we own and a valid signal number has no memory effects.
            let rc = unsafe { libc::kill(pid, signal) };
            assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
        }
    }

    /// SIGTERM, then waits for the exit (at most `limit`) and returns status and output.
    pub fn terminate(&mut self, limit: Duration) -> (ExitStatus, Output) {
        self.signal(libc::SIGTERM);
        let mut child = self.child.take().expect("running child");
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("log-capturer did not exit within {limit:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = child.wait().expect("collect exit status");
        let output = Output {
            status,
            stdout: std::fs::read(self.dir.path().join("stdout.log")).unwrap_or_default(),
            stderr: self.stderr().into_bytes(),
        };
        (status, output)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Counts the lines of a file (0 if it does not exist yet).
pub fn line_count(path: &Path) -> usize {
    std::fs::read(path)
        .map(|bytes| bytes.iter().filter(|&&b| b == b'\n').count())
        .unwrap_or(0)
}

/// Runs the binary to completion with arguments.
pub fn run_cli(args: &[&str]) -> Output {
    run_cli_with_env(args, &[])
}

/// Runs the binary to completion with arguments and extra environment variables.
pub fn run_cli_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(binary());
    command.args(args).env_remove("RUST_LOG");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run log-capturer")
}

/// `log-capturer validate --config FILE [args]` on `config` (YAML; `{dir}` is replaced by a
/// temporary directory that lives until the call returns): (success, stdout, stderr).
pub fn validate(config: &str, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        config.replace("{dir}", &dir.path().display().to_string()),
    )
    .expect("write config");
    let path = path.display().to_string();
    let mut all = vec!["validate", "--config", path.as_str()];
    all.extend_from_slice(args);
    let output = run_cli_with_env(&all, env);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The embedded default configuration with its data directory and API moved into an
/// [`Instance`]'s (`{dir}/data`, `127.0.0.1:{port}`): "the default config" for process tests.
pub fn default_like_config() -> String {
    let text = include_str!("../../configs/default.yaml").replace("./data", "{dir}/data");
    assert!(text.contains("listen: \"127.0.0.1:8401\""));
    text.replace("127.0.0.1:8401", "127.0.0.1:{port}")
}
