//! The real `corral-logger` binary, given its descriptors as containerd's shim gives them
//! (stdout on fd 3, stderr on fd 4, the ready pipe on fd 5; set up here by bash).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use corral_logger::format::{parse, Stream};

const BIN: &str = env!("CARGO_BIN_EXE_corral-logger");

/// The records of a log file: (stream, partial, content).
fn records(path: &Path) -> Vec<(Stream, bool, String)> {
    std::fs::read(path)
        .unwrap_or_default()
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let r = parse(l).unwrap_or_else(|| panic!("not a record: {l:?}"));
            (
                r.stream,
                r.partial,
                String::from_utf8_lossy(r.content).into_owned(),
            )
        })
        .collect()
}

#[test]
fn both_outputs_become_timed_records_and_the_copier_ends_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("0.log");
    let status = Command::new("bash")
        .arg("-c")
        .arg(r#"exec "$0" logger "$1" 3< <(printf 'one\ntwo\nthree') 4< <(printf 'oops\n') 5>/dev/null"#)
        .arg(BIN)
        .arg(&log)
        .status()
        .unwrap();
    assert!(status.success());
    let mut got = records(&log);
    // The two pipes are read as they come: compare each stream's records in order.
    got.sort_by_key(|(s, _, _)| *s == Stream::Stderr);
    assert_eq!(
        got,
        [
            (Stream::Stdout, false, "one".to_string()),
            (Stream::Stdout, false, "two".to_string()),
            (Stream::Stdout, false, "three".to_string()),
            (Stream::Stderr, false, "oops".to_string()),
        ]
    );
}

#[test]
fn sigterm_drains_what_was_written_and_ends_the_copier() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("0.log");
    let fifo = dir.path().join("out");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(r#"exec "$0" logger "$1" 3<"$2" 4</dev/null 5>/dev/null"#)
        .arg(BIN)
        .arg(&log)
        .arg(&fifo)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    // The container's side of the pipe stays open, as the shim's does: only SIGTERM ends it.
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    writer.write_all(b"first\nsecond, unfinished").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while records(&log).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the first line was never written"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "SIGTERM did not end the copier");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert_eq!(
        records(&log),
        [
            (Stream::Stdout, false, "first".to_string()),
            (Stream::Stdout, false, "second, unfinished".to_string()),
        ]
    );
    drop(writer);
}
