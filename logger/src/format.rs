//! The container log file's line format, CRI's: `<RFC 3339 time> <stdout|stderr> <F|P> <bytes>\n`
//! (F: the line ended; P: a part of a longer line). `copier.rs` writes it; the agent's `logs.rs`
//! reads it back, with or without the times, from a time on. Raw lines pass as they are.

use jiff::Timestamp;

/// The most bytes of one record; a longer line is cut into partial (`P`) records.
pub const MAX_RECORD: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One record of a log file, borrowed from the file's bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub time: &'a str,
    pub stream: Stream,
    /// A part of a line that goes on in the next record (`P`).
    pub partial: bool,
    pub content: &'a [u8],
}

/// Appends one record to `out`. `content` holds no newline.
pub fn encode(out: &mut Vec<u8>, time: Timestamp, stream: Stream, partial: bool, content: &[u8]) {
    use std::io::Write;
    let tag = if partial { 'P' } else { 'F' };
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{time} {} {tag} ", stream.as_str());
    out.extend_from_slice(content);
    out.push(b'\n');
}

/// The record a line (without its newline) holds; `None` when it is not one (a raw log line).
pub fn parse(line: &[u8]) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        b"F" => false,
        b"P" => true,
        _ => return None,
    };
    let content = parts.next().unwrap_or(b"");
    time.parse::<Timestamp>().ok()?;
    Some(Record {
        time,
        stream,
        partial,
        content,
    })
}

/// How records are shown: kubelet's `timestamps` and `sinceTime`.
#[derive(Debug, Clone, Copy, Default)]
pub struct View {
    pub timestamps: bool,
    pub since: Option<Timestamp>,
}

impl View {
    /// Appends what a user sees of one line of the file (without its newline) to `out`.
    pub fn render(&self, line: &[u8], out: &mut Vec<u8>) {
        let Some(r) = parse(line) else {
            // A raw line (a log written before this format): shown as it is, never filtered.
            out.extend_from_slice(line);
            out.push(b'\n');
            return;
        };
        if let Some(since) = self.since {
            if r.time.parse::<Timestamp>().is_ok_and(|t| t < since) {
                return;
            }
        }
        if self.timestamps {
            out.extend_from_slice(r.time.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(r.content);
        if !r.partial {
            out.push(b'\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn records_round_trip_through_the_file_format() {
        let mut out = Vec::new();
        encode(
            &mut out,
            at("2026-12-06T17:00:00.5Z"),
            Stream::Stderr,
            false,
            b"oops: a b",
        );
        assert_eq!(out, b"2026-12-06T17:00:00.5Z stderr F oops: a b\n");
        let r = parse(&out[..out.len() - 1]).unwrap();
        assert_eq!(
            r,
            Record {
                time: "2026-12-06T17:00:00.5Z",
                stream: Stream::Stderr,
                partial: false,
                content: b"oops: a b",
            }
        );
    }

    #[test]
    fn lines_that_are_not_records_are_raw() {
        for line in [
            &b"hello world"[..],
            b"",
            b"2026-12-06T17:00:00Z stdin F x",
            b"2026-12-06T17:00:00Z stdout X x",
            b"yesterday stdout F x",
        ] {
            assert_eq!(parse(line), None, "{}", String::from_utf8_lossy(line));
        }
        assert_eq!(
            parse(b"2026-12-06T17:00:00Z stdout F").unwrap().content,
            b""
        );
    }

    #[test]
    fn the_view_shows_times_joins_partial_records_and_starts_at_since() {
        let file: &[&[u8]] = &[
            b"2026-12-06T17:00:00Z stdout F one",
            b"2026-12-06T17:00:01Z stdout P tw",
            b"2026-12-06T17:00:01Z stdout F o",
            b"raw line",
            b"2026-12-06T17:00:02Z stderr F three",
        ];
        let show = |v: View| {
            let mut out = Vec::new();
            for l in file {
                v.render(l, &mut out);
            }
            String::from_utf8(out).unwrap()
        };
        assert_eq!(show(View::default()), "one\ntwo\nraw line\nthree\n");
        assert_eq!(
            show(View {
                timestamps: true,
                since: None
            }),
            "2026-12-06T17:00:00Z one\n2026-12-06T17:00:01Z tw2026-12-06T17:00:01Z o\nraw line\n2026-12-06T17:00:02Z three\n"
        );
        assert_eq!(
            show(View {
                timestamps: false,
                since: Some(at("2026-12-06T17:00:01Z"))
            }),
            "two\nraw line\nthree\n"
        );
    }
}
