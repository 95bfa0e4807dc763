//! One attempt of the job under `baton-run`'s eye: output through a pipe into a bounded
//! log, every child reaped (`baton-run` is a subreaper), `--timeout` enforced, a TERM, INT
//! or HUP sent to `baton-run` (a take-over, a shutdown) passed on to the whole job, and
//! whatever the job leaves behind ended when its command returns.

use crate::process::{end_all, job_processes, spawn_in_group, Ending, Marker};
use baton_core::error::ExitStatus;
use rustix::process::{wait, WaitOptions};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How much of the output's end a failure shows on stderr.
pub const EXCERPT_BYTES: usize = 4096;
pub const EXCERPT_LINES: usize = 20;

enum Event {
    Exited(u32, Ending),
    /// No child is left to reap.
    Reaped,
    /// The job's output pipe reached its end.
    OutputDone,
    Signal(i32),
}

/// The log of one run: its head written as it comes, its tail kept in memory and written
/// at the end, so a log never grows past its bound; the last lines kept for stderr.
pub struct Capture {
    path: PathBuf,
    /// None for output kept only in memory (a `--condition`'s).
    log: Option<File>,
    head_room: u64,
    tail_limit: usize,
    tail: VecDeque<u8>,
    omitted: u64,
    last: VecDeque<u8>,
    /// Why the log is incomplete (a full disk), if it is.
    pub error: Option<String>,
}

impl Capture {
    /// Create the run's log, bounded to `limit` bytes (half head, half tail).
    pub fn create(path: &Path, limit: u64) -> std::io::Result<Capture> {
        // Never through a link, never another user's file (core::safefs).
        let log =
            baton_core::safefs::open_append(path).map_err(|e| std::io::Error::other(e.message))?;
        Ok(Capture {
            path: path.to_path_buf(),
            log: Some(log),
            head_room: limit / 2,
            tail_limit: (limit - limit / 2) as usize,
            tail: VecDeque::new(),
            omitted: 0,
            last: VecDeque::new(),
            error: None,
        })
    }

    /// Output kept only for [`Capture::excerpt`], written nowhere.
    pub fn in_memory() -> Capture {
        Capture {
            path: PathBuf::new(),
            log: None,
            head_room: 0,
            tail_limit: 0,
            tail: VecDeque::new(),
            omitted: 0,
            last: VecDeque::new(),
            error: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn feed(&mut self, mut buf: &[u8]) {
        keep_last(&mut self.last, buf, EXCERPT_BYTES);
        if self.head_room > 0 {
            let n = buf.len().min(self.head_room as usize);
            self.write(&buf[..n]);
            self.head_room -= n as u64;
            buf = &buf[n..];
        }
        self.omitted += keep_last(&mut self.tail, buf, self.tail_limit);
    }

    fn write(&mut self, bytes: &[u8]) {
        if let (None, Some(log)) = (&self.error, &mut self.log) {
            if let Err(e) = log.write_all(bytes) {
                self.error = Some(baton_core::error::io_reason(&e));
            }
        }
    }

    /// Write the kept tail (after a line saying what was left out).
    pub fn finish(&mut self) {
        if self.omitted > 0 {
            let note = format!(
                "\n[baton-run: {} bytes left out of this log, see --log-limit]\n",
                self.omitted
            );
            self.write(note.as_bytes());
        }
        let tail: Vec<u8> = self.tail.drain(..).collect();
        self.write(&tail);
        self.omitted = 0;
    }

    /// The end of the output for a failure report: at most [`EXCERPT_LINES`] lines and
    /// [`EXCERPT_BYTES`] bytes, ending in a newline, or empty.
    pub fn excerpt(&self) -> String {
        let bytes: Vec<u8> = self.last.iter().copied().collect();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(EXCERPT_LINES);
        // Cron mails this and terminals show it: control bytes (NUL, ESC, CR) are shown
        // escaped, never passed on; the log keeps the bytes as they came.
        let mut out: String = lines[from..]
            .join("\n")
            .chars()
            .flat_map(|c| match c {
                '\n' | '\t' => vec![c],
                c if c.is_control() => c.escape_default().collect(),
                c => vec![c],
            })
            .collect();
        if !out.is_empty() {
            out.push('\n');
        }
        out
    }
}

/// Append `bytes` to `ring`, dropping from its front past `limit`; returns bytes dropped.
fn keep_last(ring: &mut VecDeque<u8>, bytes: &[u8], limit: usize) -> u64 {
    ring.extend(bytes);
    let excess = ring.len().saturating_sub(limit);
    ring.drain(..excess);
    excess as u64
}

/// The tick's supervisor: signals to `baton-run` arrive here from the start, so a
/// take-over is heard whatever the run is doing.
pub struct Supervisor {
    tx: Sender<Event>,
    rx: Receiver<Event>,
    pending: Option<i32>,
}

impl Supervisor {
    pub fn new() -> Supervisor {
        let (tx, rx) = channel();
        if let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]) {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for sig in signals.forever() {
                    if tx.send(Event::Signal(sig)).is_err() {
                        break;
                    }
                }
            });
        }
        crate::process::become_subreaper();
        Supervisor {
            tx,
            rx,
            pending: None,
        }
    }

    /// The signal that told `baton-run` to stop, if one came.
    pub fn interrupted(&mut self) -> Option<i32> {
        while let Ok(ev) = self.rx.try_recv() {
            if let Event::Signal(s) = ev {
                self.pending.get_or_insert(s);
            }
        }
        self.pending
    }

    /// Sleep `pause` (a retry's back-off) unless a signal comes; returns the signal.
    pub fn pause(&mut self, pause: Duration) -> Option<i32> {
        let deadline = Instant::now() + pause;
        while self.pending.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Event::Signal(s)) => self.pending = Some(s),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        self.pending
    }

    /// Run `command` once: output into `capture`, bounded by `timeout`; then end whatever
    /// of the job is left (its processes carry `marker`). Returns how it ended, its pid,
    /// and how many processes had to be ended.
    pub fn attempt(
        &mut self,
        mut command: Command,
        capture: &Arc<Mutex<Capture>>,
        marker: &Marker,
        timeout: Option<Duration>,
        grace: Duration,
        started: impl FnOnce(u32),
    ) -> (Ending, usize) {
        let (reader, writer) = match std::io::pipe() {
            Ok(pair) => pair,
            Err(e) => {
                return (
                    Ending::NotStarted(
                        ExitStatus::CANNOT_EXECUTE,
                        baton_core::error::io_reason(&e),
                    ),
                    0,
                )
            }
        };
        match writer.try_clone() {
            Ok(w) => command.stdout(w).stderr(writer),
            Err(e) => {
                return (
                    Ending::NotStarted(
                        ExitStatus::CANNOT_EXECUTE,
                        baton_core::error::io_reason(&e),
                    ),
                    0,
                )
            }
        };
        let spawned = spawn_in_group(&mut command);
        // Our copies of the pipe's write end go with the Command: the job holds the rest.
        drop(command);
        let child = match spawned {
            Ok(child) => child,
            Err(ending) => return (ending, 0),
        };
        let pid = child.id();
        drop(child); // reaped below, by waitpid on any child
        started(pid);
        self.read_output(reader, capture);
        self.reap();

        let deadline = timeout.map(|t| Instant::now() + t);
        let mut ending = None;
        let mut reaped = false;
        let mut output_done = false;
        let mut timed_out = false;
        while ending.is_none() && self.pending.is_none() {
            let ev = match deadline {
                Some(d) => match self
                    .rx
                    .recv_timeout(d.saturating_duration_since(Instant::now()))
                {
                    Ok(ev) => ev,
                    Err(RecvTimeoutError::Timeout) => {
                        timed_out = true;
                        break;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match self.rx.recv() {
                    Ok(ev) => ev,
                    Err(_) => break,
                },
            };
            self.note(ev, pid, &mut ending, &mut reaped, &mut output_done);
        }
        let interrupted = self.pending.filter(|_| ending.is_none() && !timed_out);
        // The command returned, timed out or baton-run was told to stop: nothing of the
        // job may outlive this attempt.
        let me = std::process::id();
        let killed = end_all(|| job_processes(Some(me), marker, &[]), grace);
        // Every process is gone: collect the reaper's and the reader's last words.
        let limit = Instant::now() + grace + Duration::from_secs(2);
        while !(reaped && output_done) {
            match self
                .rx
                .recv_timeout(limit.saturating_duration_since(Instant::now()))
            {
                Ok(ev) => self.note(ev, pid, &mut ending, &mut reaped, &mut output_done),
                Err(_) => break,
            }
        }
        let ending = if timed_out {
            Ending::TimedOut
        } else if let Some(sig) = interrupted {
            Ending::Interrupted(sig)
        } else {
            ending.unwrap_or(Ending::Signalled(9))
        };
        (ending, killed)
    }

    fn note(
        &mut self,
        ev: Event,
        pid: u32,
        ending: &mut Option<Ending>,
        reaped: &mut bool,
        output_done: &mut bool,
    ) {
        match ev {
            Event::Exited(p, e) if p == pid => *ending = Some(e),
            Event::Exited(..) => {}
            Event::Reaped => *reaped = true,
            Event::OutputDone => *output_done = true,
            Event::Signal(s) => {
                self.pending.get_or_insert(s);
            }
        }
    }

    /// Copy the job's output into the capture until every writer is gone.
    fn read_output(&self, mut reader: std::io::PipeReader, capture: &Arc<Mutex<Capture>>) {
        let tx = self.tx.clone();
        let capture = Arc::clone(capture);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if let Ok(mut c) = capture.lock() {
                            c.feed(&buf[..n]);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = tx.send(Event::OutputDone);
        });
    }

    /// Reap every child (the job, and orphans that reparent to this subreaper).
    fn reap(&self) {
        let tx = self.tx.clone();
        std::thread::spawn(move || loop {
            match wait(WaitOptions::empty()) {
                Ok(Some((pid, status))) => {
                    let ending = match (status.exit_status(), status.terminating_signal()) {
                        (Some(code), _) => Ending::Exited(code),
                        (None, Some(sig)) => Ending::Signalled(sig),
                        (None, None) => continue,
                    };
                    let _ = tx.send(Event::Exited(pid.as_raw_nonzero().get() as u32, ending));
                }
                Ok(None) => {}
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => {
                    let _ = tx.send(Event::Reaped);
                    break;
                }
            }
        });
    }
}

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_keeps_head_and_tail_within_its_bound() {
        let dir = std::env::temp_dir().join(format!("baton-capture-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("run.log");
        let mut c = Capture::create(&path, 20).unwrap();
        c.feed(b"0123456789");
        c.feed(b"abcdefghij");
        c.feed(b"KLMNOPQRST\nlast\n");
        c.finish();
        let log = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            log,
            "0123456789\n[baton-run: 16 bytes left out of this log, see --log-limit]\nQRST\nlast\n"
        );
        assert_eq!(c.excerpt(), "0123456789abcdefghijKLMNOPQRST\nlast\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_excerpt_is_the_last_lines() {
        let dir = std::env::temp_dir().join(format!("baton-excerpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut c = Capture::create(&dir.join("run.log"), 1 << 20).unwrap();
        for i in 0..30 {
            c.feed(format!("line {i}\n").as_bytes());
        }
        let e = c.excerpt();
        assert_eq!(e.lines().count(), EXCERPT_LINES);
        assert!(
            e.starts_with("line 10\n") && e.ends_with("line 29\n"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_excerpt_escapes_control_bytes() {
        let mut c = Capture::in_memory();
        c.feed(b"a\x00b\x1b[2J\rX\tY\nnext\n");
        assert_eq!(c.excerpt(), "a\\u{0}b\\u{1b}[2J\\rX\tY\nnext\n");
    }
}
