//! The log copier containerd's shim starts for each container task (its `binary://` stdio):
//! it reads the container's stdout (fd 3) and stderr (fd 4) and appends timed records
//! (`format.rs`) to a file. It is the shim's child, not the agent's, so an agent restart or
//! upgrade loses no output, as with the plain `file://` stdio it replaces.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::SignalFd;

use crate::format::{self, Stream, MAX_RECORD};

/// The shim's descriptors: stdout and stderr pipes, and the pipe closed to say "ready".
const STDOUT_FD: RawFd = 3;
const STDERR_FD: RawFd = 4;
const READY_FD: RawFd = 5;

/// The URI's one query key: `binary://<copier>?logger=<file>` makes the shim run
/// `<copier> logger <file>` (it passes each key and its value as two arguments).
pub const SUBCOMMAND: &str = "logger";

#[derive(Debug, thiserror::Error)]
pub enum LoggerError {
    #[error("opening log file {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("setting up SIGTERM handling: {0}")]
    Signal(#[source] Errno),
    #[error("waiting for container output: {0}")]
    Poll(#[source] Errno),
}

/// The containerd stdio URI that makes the shim start the copier `binary` for `log`.
pub fn stdio_uri(binary: &Path, log: &Path) -> String {
    format!(
        "binary://{}?{SUBCOMMAND}={}",
        binary.display(),
        percent_encode(&log.display().to_string())
    )
}

/// Query-value escaping for a path (the shim parses the URI with Go's url package).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// One output of the container and the line it has not finished yet.
struct Source {
    pipe: Option<File>,
    stream: Stream,
    pending: Vec<u8>,
}

/// A descriptor the shim handed over, opened again through /proc (as /dev/stdin is), so no
/// unsafe code takes ownership of a raw number; `None` when the shim passed none.
fn inherited(fd: RawFd) -> Option<File> {
    let file = File::open(format!("/proc/self/fd/{fd}")).ok()?;
    let _ = nix::unistd::close(fd);
    Some(file)
}

/// Copies until both outputs end, or until the shim's SIGTERM (then whatever is readable is
/// drained first). Write errors (a full disk) drop output but never stop the reading, so the
/// container is never blocked on a full pipe.
pub fn run(path: &Path) -> Result<(), LoggerError> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .map_err(|source| LoggerError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    // SIGTERM arrives as a readable descriptor, polled with the pipes.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.thread_block().map_err(LoggerError::Signal)?;
    let term = SignalFd::new(&mask).map_err(LoggerError::Signal)?;
    let mut sources: Vec<Source> = [(STDOUT_FD, Stream::Stdout), (STDERR_FD, Stream::Stderr)]
        .into_iter()
        .filter_map(|(fd, stream)| {
            inherited(fd).map(|pipe| Source {
                pipe: Some(pipe),
                stream,
                pending: Vec::new(),
            })
        })
        .collect();
    // Ready: the shim waits for this pipe to close before it starts the container.
    let _ = nix::unistd::close(READY_FD);
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(64 * 1024);
    while sources.iter().any(|s| s.pipe.is_some()) {
        let open: Vec<usize> = (0..sources.len())
            .filter(|i| sources[*i].pipe.is_some())
            .collect();
        let (ready, terminated) = {
            let mut fds: Vec<PollFd> = open
                .iter()
                .filter_map(|i| sources[*i].pipe.as_ref())
                .map(|p| PollFd::new(p.as_fd(), PollFlags::POLLIN))
                .collect();
            fds.push(PollFd::new(term.as_fd(), PollFlags::POLLIN));
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(LoggerError::Poll(e)),
            }
            let hit: Vec<bool> = fds
                .iter()
                .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            let terminated = hit.last().copied().unwrap_or(false);
            (hit, terminated)
        };
        if terminated {
            drain(&mut sources, &mut buf, &mut out, &mut file);
            break;
        }
        for (i, is_ready) in open.into_iter().zip(ready) {
            if is_ready {
                read_once(&mut sources[i], &mut buf, &mut out);
            }
        }
        flush(&mut out, &mut file);
    }
    for s in &mut sources {
        finish(s, Timestamp::now(), &mut out);
    }
    flush(&mut out, &mut file);
    Ok(())
}

/// One read of a source into records; the end of its pipe ends it. True when it read data.
fn read_once(s: &mut Source, buf: &mut [u8], out: &mut Vec<u8>) -> bool {
    let Some(pipe) = s.pipe.as_mut() else {
        return false;
    };
    match pipe.read(buf) {
        Ok(0) => {
            finish(s, Timestamp::now(), out);
            s.pipe = None;
            false
        }
        Ok(n) => {
            feed(s, &buf[..n], Timestamp::now(), out);
            true
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
            ) =>
        {
            false
        }
        Err(_) => {
            finish(s, Timestamp::now(), out);
            s.pipe = None;
            false
        }
    }
}

/// Reads whatever is there without waiting (after SIGTERM).
fn drain(sources: &mut [Source], buf: &mut [u8], out: &mut Vec<u8>, file: &mut File) {
    for s in sources.iter_mut() {
        let Some(fd) = s.pipe.as_ref().map(|p| p.as_raw_fd()) else {
            continue;
        };
        let nonblocking = fcntl(fd, FcntlArg::F_GETFL)
            .map(|f| OFlag::from_bits_truncate(f) | OFlag::O_NONBLOCK)
            .and_then(|f| fcntl(fd, FcntlArg::F_SETFL(f)));
        if nonblocking.is_err() {
            continue;
        }
        while read_once(s, buf, out) {
            flush(out, file);
        }
    }
}

/// Turns output into records: one per finished line, partial ones for lines longer than a
/// record may be.
fn feed(s: &mut Source, mut data: &[u8], now: Timestamp, out: &mut Vec<u8>) {
    while let Some(nl) = data.iter().position(|b| *b == b'\n') {
        s.pending.extend_from_slice(&data[..nl]);
        emit(s, now, false, out);
        data = &data[nl + 1..];
    }
    s.pending.extend_from_slice(data);
    while s.pending.len() >= MAX_RECORD {
        let rest = s.pending.split_off(MAX_RECORD);
        emit(s, now, true, out);
        s.pending = rest;
    }
}

/// Writes `pending` as one record (long finished lines as partial records and a last one).
fn emit(s: &mut Source, now: Timestamp, partial: bool, out: &mut Vec<u8>) {
    let line = std::mem::take(&mut s.pending);
    let mut chunks = line.chunks(MAX_RECORD).peekable();
    if chunks.peek().is_none() {
        format::encode(out, now, s.stream, partial, b"");
    }
    while let Some(c) = chunks.next() {
        let last = chunks.peek().is_none();
        format::encode(out, now, s.stream, partial || !last, c);
    }
}

/// The end of a source: a line it did not finish is written as finished.
fn finish(s: &mut Source, now: Timestamp, out: &mut Vec<u8>) {
    if !s.pending.is_empty() {
        emit(s, now, false, out);
    }
}

fn flush(out: &mut Vec<u8>, file: &mut File) {
    if !out.is_empty() {
        // A failed write drops these records; reading goes on (see `run`).
        let _ = file.write_all(out);
        out.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(chunks: &[&[u8]]) -> Vec<String> {
        let mut s = Source {
            pipe: None,
            stream: Stream::Stdout,
            pending: Vec::new(),
        };
        let mut out = Vec::new();
        let t: Timestamp = "2026-12-06T17:00:00Z".parse().unwrap();
        for c in chunks {
            feed(&mut s, c, t, &mut out);
        }
        finish(&mut s, t, &mut out);
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| {
                l.trim_start_matches("2026-12-06T17:00:00Z stdout ")
                    .to_string()
            })
            .map(|l| {
                if l.len() > 40 {
                    format!("{}..({})", &l[..4], l.len())
                } else {
                    l
                }
            })
            .collect()
    }

    #[test]
    fn output_becomes_one_record_per_line_whatever_the_reads() {
        assert_eq!(records(&[b"a\nb", b"c\n\nd"]), ["F a", "F bc", "F ", "F d"]);
        assert_eq!(records(&[b"x"]), ["F x"]);
        assert!(records(&[]).is_empty());
    }

    #[test]
    fn a_line_longer_than_a_record_is_cut_into_partial_records() {
        let long = vec![b'z'; MAX_RECORD * 2 + 10];
        let mut data = long.clone();
        data.push(b'\n');
        assert_eq!(
            records(&[&data[..5000], &data[5000..]]),
            [
                format!("P zz..({})", MAX_RECORD + 2),
                format!("P zz..({})", MAX_RECORD + 2),
                "F zzzzzzzzzz".to_string()
            ]
        );
    }

    #[test]
    fn the_uri_runs_this_subcommand_on_the_log_path() {
        assert_eq!(
            stdio_uri(
                Path::new("/usr/local/bin/corral-logger"),
                Path::new("/var/lib/corral/agent/pods/u1/logs/web 1/0.log")
            ),
            "binary:///usr/local/bin/corral-logger?logger=/var/lib/corral/agent/pods/u1/logs/web%201/0.log"
        );
    }
}
