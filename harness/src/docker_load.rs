//! The Docker load (`--load docker[=N]`): N containers whose standard output carries the
//! harness's numbered lines, so that the shipper reads them through its `docker` source, from
//! the engine's log driver, as it reads any container.
//!
//! How the lines get there: each container runs `cat` on a FIFO of its own (bind-mounted
//! read-only from the run's directory) and the harness writes the lines into the FIFO at the
//! profile's rate, paced by the same clock as the file load. The rate is the harness's, not a
//! shell loop's (busybox has no clock finer than a second without a fork per line), and every
//! line carries the wall-clock `created=` the receiver measures latency from, so the latency
//! includes the time Docker's log driver takes.
//!
//! Guarantees:
//! - Each container numbers its own lines `seq=1, 2, ...`: a container is one stream for the
//!   receiver (the source labels lines by container name), which checks numbers per stream.
//!   The lines of one call are spread evenly over the containers.
//! - Every container the load creates is removed: when the load is dropped, and by
//!   [`remove_all`] (which the harness calls on Ctrl-C and before it exits), because a
//!   container outlives the process that created it. Names start with `lc-harness-<pid>-`.
//! - A write into a FIFO blocks while the container's pipe is full: a slow log driver slows
//!   the load down (and the report says what was achieved), it never drops a line.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::load::{LineShape, LoadSource, format_line, wall_ns};

/// The image scripts/docker-setup.sh imports (busybox-static as a root filesystem).
pub const DEFAULT_IMAGE: &str = "lc-busybox";

/// Containers created by this process and not removed yet.
static LIVE: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

fn live() -> std::sync::MutexGuard<'static, BTreeSet<String>> {
    match LIVE.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Removes (`docker rm -f`) `names`, in groups, ignoring the ones already gone, and returns
/// once the engine no longer lists them (or after 10 s): a `docker rm -f` that meets a removal
/// already under way (the load's own, on another thread) fails while the container is still
/// listed, and a Ctrl-C must not leave it behind for whoever looks next.
fn remove(names: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    for group in names.chunks(100) {
        let mut left: Vec<String> = group.to_vec();
        loop {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&left)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let Ok(existing) = existing(&name_prefix()) else {
                break;
            };
            left.retain(|name| existing.contains(name));
            if left.is_empty() || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let mut live = live();
    for name in names {
        live.remove(name);
    }
}

/// Removes every container this process created and has not removed yet (Ctrl-C, errors).
pub fn remove_all() {
    let names: Vec<String> = live().iter().cloned().collect();
    if !names.is_empty() {
        eprintln!("removing {} load container(s) ...", names.len());
        remove(&names);
    }
}

/// The prefix of this process's container names.
pub fn name_prefix() -> String {
    format!("lc-harness-{}-", std::process::id())
}

fn docker_output(args: &[&str]) -> Result<String, String> {
    let output = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("running docker: {err} (is the docker CLI installed?)"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "docker {} failed: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Whether an engine answers and has `image`; an error that says how to get both.
pub fn check_engine(image: &str) -> Result<(), String> {
    docker_output(&["info", "--format", "{{.ServerVersion}}"]).map_err(|err| {
        format!(
            "--load docker needs a Docker engine: {err}; start dockerd (scripts/docker-setup.sh)"
        )
    })?;
    docker_output(&["image", "inspect", "--format", "{{.Id}}", image]).map_err(|_| {
        format!(
            "--load docker needs the image {image}: scripts/docker-setup.sh imports it from busybox-static"
        )
    })?;
    Ok(())
}

fn mkfifo(path: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: mkfifo reads the NUL-terminated path, which outlives the call.
    let rc = unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

struct LoadContainer {
    name: String,
    /// The FIFO's write end; `None` once closed (the container's `cat` then ends).
    writer: Option<BufWriter<File>>,
    /// Lines written to this container (its last `seq`).
    made: u64,
}

/// N containers printing the harness's numbered lines.
pub struct DockerLoad {
    containers: Vec<LoadContainer>,
    shape: LineShape,
    made: u64,
    /// The container the next chunk goes to.
    next: usize,
    scratch: Vec<u8>,
}

/// At most this many `docker run` at once (each is a CLI process and a request to dockerd).
const PARALLEL_STARTS: usize = 8;

impl DockerLoad {
    /// Creates `count` FIFOs under `dir` and starts a container on each from `image`.
    pub fn start(dir: &Path, count: usize, shape: LineShape, image: &str) -> Result<Self, String> {
        check_engine(image)?;
        std::fs::create_dir_all(dir).map_err(|err| format!("creating {}: {err}", dir.display()))?;
        let mount = format!("{}:/load:ro", dir.display());
        let prefix = name_prefix();
        let started = Instant::now();
        let mut containers = Vec::with_capacity(count);
        let mut fifos: Vec<PathBuf> = Vec::with_capacity(count);
        for i in 0..count.max(1) {
            let fifo = dir.join(format!("load-{i}.fifo"));
            mkfifo(&fifo).map_err(|err| format!("creating {}: {err}", fifo.display()))?;
            fifos.push(fifo);
            containers.push(LoadContainer {
                name: format!("{prefix}{i}"),
                writer: None,
                made: 0,
            });
        }
        let mut load = Self {
            containers,
            shape,
            made: 0,
            next: 0,
            scratch: Vec::with_capacity(64 * 1024),
        };
        // Started a few at a time; a failure stops the rest (Drop removes what was made).
        for (group, names) in load
            .containers
            .chunks(PARALLEL_STARTS)
            .map(|g| g.iter().map(|c| c.name.clone()).collect::<Vec<_>>())
            .enumerate()
        {
            let mut children = Vec::new();
            let mut failure = None;
            for (j, name) in names.iter().enumerate() {
                let i = group * PARALLEL_STARTS + j;
                live().insert(name.clone());
                // `cat` ends when the harness closes the FIFO; the container then stays (a
                // stopped container without a cursor is not followed, and a prefilled log must
                // still be read).
                let script = format!("cat /load/load-{i}.fifo; exec sleep 2147483647");
                let spawned = Command::new("docker")
                    .args(["run", "-d", "--name", name, "--network", "none"])
                    .args(["--label", &format!("lc-harness={}", std::process::id())])
                    .args(["-v", &mount, image, "sh", "-c", &script])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn();
                match spawned {
                    Ok(child) => children.push((name.clone(), child)),
                    Err(err) => {
                        failure = Some(format!("running docker: {err}"));
                        break;
                    }
                }
            }
            // Every `docker run` of the group is waited for, so none creates a container
            // after an error made the load remove what it had.
            for (name, child) in children {
                let error = match child.wait_with_output() {
                    Ok(output) if output.status.success() => continue,
                    Ok(output) => String::from_utf8_lossy(&output.stderr).trim().to_string(),
                    Err(err) => format!("waiting for docker run: {err}"),
                };
                failure.get_or_insert(format!("starting container {name}: {error}"));
            }
            if let Some(failure) = failure {
                return Err(failure);
            }
        }
        // Read and write: opening never blocks on a reader, and the containers' `cat`s have
        // the FIFOs open by now (`docker run -d` returns once the container runs).
        for (container, fifo) in load.containers.iter_mut().zip(&fifos) {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(fifo)
                .map_err(|err| format!("opening {}: {err}", fifo.display()))?;
            container.writer = Some(BufWriter::with_capacity(64 * 1024, file));
        }
        eprintln!(
            "started {} load container(s) {prefix}* in {:.1} s",
            load.containers.len(),
            started.elapsed().as_secs_f64()
        );
        Ok(load)
    }

    /// The glob of the containers' names.
    pub fn include_glob(&self) -> String {
        format!("{}*", name_prefix())
    }
}

impl LoadSource for DockerLoad {
    fn configure_source(&self, source: &mut Value) {
        // The profile's entry is for files: replaced as a whole, so no file key remains.
        *source = json!({
            "type": "docker",
            "include_names": [self.include_glob()],
        });
    }

    fn make_until(&mut self, total: u64) -> io::Result<()> {
        let created = wall_ns();
        let count = self.containers.len() as u64;
        // Spread what is due now over the containers, in chunks of at most 256 lines.
        let per = total
            .saturating_sub(self.made)
            .div_ceil(count)
            .clamp(1, 256);
        while self.made < total {
            let container = &mut self.containers[self.next];
            let take = per.min(total - self.made);
            self.scratch.clear();
            for _ in 0..take {
                container.made += 1;
                format_line(&mut self.scratch, container.made, created, self.shape);
            }
            let writer = container.writer.as_mut().ok_or_else(|| {
                io::Error::new(io::ErrorKind::BrokenPipe, "the load's FIFO is closed")
            })?;
            writer.write_all(&self.scratch)?;
            self.made += take;
            self.next = (self.next + 1) % self.containers.len();
        }
        for container in &mut self.containers {
            if let Some(writer) = container.writer.as_mut() {
                writer.flush()?;
            }
        }
        Ok(())
    }

    fn made(&self) -> u64 {
        self.made
    }

    /// Closes the FIFOs and waits until Docker holds every container's last line.
    fn settle(&mut self, limit: Duration) -> Result<(), String> {
        for container in &mut self.containers {
            if let Some(mut writer) = container.writer.take() {
                writer
                    .flush()
                    .map_err(|err| format!("writing {}: {err}", container.name))?;
            }
        }
        let deadline = Instant::now() + limit;
        for container in &self.containers {
            if container.made == 0 {
                continue;
            }
            let last = format!("seq={:010} ", container.made);
            loop {
                let tail = docker_output(&["logs", "--tail", "1", &container.name])?;
                if tail.starts_with(&last) {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "{}: Docker did not hold its last line ({last}) within {limit:?}",
                        container.name
                    ));
                }
                // Polling the engine with a deadline.
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        Ok(())
    }
}

impl Drop for DockerLoad {
    fn drop(&mut self) {
        let names: Vec<String> = self.containers.iter().map(|c| c.name.clone()).collect();
        remove(&names);
    }
}

/// Names of containers that exist now and start with `prefix` (for tests and checks).
pub fn existing(prefix: &str) -> Result<Vec<String>, String> {
    let text = docker_output(&[
        "ps",
        "-a",
        "--filter",
        &format!("name=^{prefix}"),
        "--format",
        "{{.Names}}",
    ])?;
    Ok(text.lines().map(str::to_string).collect())
}
