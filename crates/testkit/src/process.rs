//! The `gatehouse` binary as a child process, with its output captured line by line.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Everything a child printed so far.
#[derive(Debug, Default, Clone)]
pub struct ProcessOutput {
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl ProcessOutput {
    pub fn stdout_text(&self) -> String {
        self.stdout.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().map(|l| l.join("\n")).unwrap_or_default()
    }
}

#[derive(Debug)]
pub struct GatehouseProcess {
    pub child: Child,
    pub output: ProcessOutput,
    /// The tasks copying stdout and stderr into `output`; they end at the pipes' end of file.
    collectors: Vec<tokio::task::JoinHandle<()>>,
}

impl GatehouseProcess {
    /// Starts `bin` with `args`, the given environment on top of a clean one (only PATH and HOME are inherited,
    /// so a developer's `GATEHOUSE_*` variables never leak in), and `dir` as the working directory.
    pub fn spawn(bin: &Path, args: &[&str], env: &[(&str, String)], dir: &Path) -> GatehouseProcess {
        Self::spawn_with_stdin(bin, args, env, dir, Stdio::null())
    }

    /// [`GatehouseProcess::spawn`] with the given stdin (`Stdio::piped()` to write to `child.stdin`).
    pub fn spawn_with_stdin(
        bin: &Path,
        args: &[&str],
        env: &[(&str, String)],
        dir: &Path,
        stdin: Stdio,
    ) -> GatehouseProcess {
        let mut cmd = Command::new(bin);
        cmd.args(args).current_dir(dir).env_clear().stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped());
        for key in ["PATH", "HOME"] {
            if let Ok(v) = std::env::var(key) {
                cmd.env(key, v);
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.kill_on_drop(true);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let output = ProcessOutput::default();
        let mut collectors = Vec::new();
        if let Some(out) = child.stdout.take() {
            collectors.push(tokio::spawn(collect(BufReader::new(out), output.stdout.clone())));
        }
        if let Some(err) = child.stderr.take() {
            collectors.push(tokio::spawn(collect(BufReader::new(err), output.stderr.clone())));
        }
        GatehouseProcess { child, output, collectors }
    }

    /// Waits until a line of stdout or stderr satisfies `pred`, returning it.
    pub async fn wait_for_line(&mut self, within: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            for lines in [&self.output.stdout, &self.output.stderr] {
                if let Some(line) = lines.lock().ok().and_then(|l| l.iter().find(|l| pred(l)).cloned()) {
                    return line;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "gatehouse exited with {status} before the expected line\nstdout:\n{}\nstderr:\n{}",
                    self.output.stdout_text(),
                    self.output.stderr_text()
                );
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "timed out waiting for a line\nstdout:\n{}\nstderr:\n{}",
                    self.output.stdout_text(),
                    self.output.stderr_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The address a listener reported in a JSON log line (`--log-format json`).
    pub async fn listener_address(&mut self, listener: &str) -> String {
        let needle = format!("\"listener\":\"{listener}\"");
        let line =
            self.wait_for_line(Duration::from_secs(30), |l| l.contains("\"listening\"") && l.contains(&needle)).await;
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("log line {line}: {e}"));
        v["address"].as_str().unwrap_or_else(|| panic!("no address in {line}")).to_owned()
    }

    /// SIGKILL: no chance to flush or clean up.
    pub async fn kill_hard(&mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGINT, as Ctrl-C sends; returns the exit status.
    pub async fn interrupt(&mut self, within: Duration) -> std::process::ExitStatus {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").args(["-INT", &pid.to_string()]).status();
        }
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("gatehouse did not stop within {within:?}"))
            .unwrap_or_else(|e| panic!("wait: {e}"));
        self.drain_output().await;
        status
    }

    /// Waits until everything the exited process wrote has been read into `output`: its last lines (a final
    /// flush of the access log, say) may still sit in the pipes when `wait` returns.
    async fn drain_output(&mut self) {
        for collector in self.collectors.drain(..) {
            // Bounded: a grandchild holding the pipe open must not hang the test.
            let _ = tokio::time::timeout(Duration::from_secs(30), collector).await;
        }
    }
}

async fn collect<R: tokio::io::AsyncBufRead + Unpin>(reader: R, into: Arc<Mutex<Vec<String>>>) {
    let mut lines = reader.lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Ok(mut v) = into.lock() {
            v.push(line);
        }
    }
}

/// Runs the binary to completion and returns (exit code, stdout, stderr).
pub async fn run_to_end(bin: &Path, args: &[&str], env: &[(&str, String)], dir: &Path) -> (i32, String, String) {
    run_with_input(bin, args, env, dir, None).await
}

/// Runs the binary to completion with `input` (if any) on its stdin; returns (exit code, stdout, stderr).
pub async fn run_with_input(
    bin: &Path,
    args: &[&str],
    env: &[(&str, String)],
    dir: &Path,
    input: Option<&str>,
) -> (i32, String, String) {
    let stdin = if input.is_some() { Stdio::piped() } else { Stdio::null() };
    let mut p = GatehouseProcess::spawn_with_stdin(bin, args, env, dir, stdin);
    if let (Some(text), Some(mut pipe)) = (input, p.child.stdin.take()) {
        use tokio::io::AsyncWriteExt;
        let _ = pipe.write_all(text.as_bytes()).await;
        // Dropping the pipe closes it: the child sees the end of its input.
    }
    let status = tokio::time::timeout(Duration::from_secs(60), p.child.wait())
        .await
        .unwrap_or_else(|_| panic!("{args:?} did not finish"))
        .unwrap_or_else(|e| panic!("wait: {e}"));
    // Let the readers drain.
    tokio::time::sleep(Duration::from_millis(50)).await;
    (status.code().unwrap_or(-1), p.output.stdout_text(), p.output.stderr_text())
}
