//! SPDY/3.1 as kubectl speaks it for port-forward (and kubectl before v1.31 for exec/attach):
//! the frame codec (`SYN_STREAM`, `SYN_REPLY`, `RST_STREAM`, `SETTINGS`, `PING`, `GOAWAY`,
//! `HEADERS`, `WINDOW_UPDATE`, data) and the header blocks, zlib-compressed with SPDY/3's
//! preset dictionary in one context per direction. Pure, with table tests.

mod dictionary;
pub mod exec;
pub mod portforward;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

pub use dictionary::dictionary;

/// `FLAG_FIN` on a data frame, `SYN_STREAM` or `SYN_REPLY`: the sender's last frame.
pub const FIN: u8 = 0x01;
/// The most bytes a frame's payload carries (24-bit length).
const MAX_LEN: usize = 0xff_ffff;
/// The most bytes a header block inflates to (a client's handful of headers).
const MAX_HEADERS: usize = 64 * 1024;

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        id: u32,
        associated: u32,
        priority: u8,
        flags: u8,
        block: Vec<u8>,
    },
    SynReply {
        id: u32,
        flags: u8,
        block: Vec<u8>,
    },
    RstStream {
        id: u32,
        status: u32,
    },
    Settings(Vec<(u8, u32, u32)>),
    Ping(u32),
    GoAway {
        last_good: u32,
        status: u32,
    },
    Headers {
        id: u32,
        flags: u8,
        block: Vec<u8>,
    },
    WindowUpdate {
        id: u32,
        delta: u32,
    },
    Data {
        id: u32,
        flags: u8,
        data: Vec<u8>,
    },
    /// A control frame of a type this side does not use (ignored, as SPDY says).
    Other(u16),
}

/// Why bytes are not SPDY/3.1.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpdyError {
    #[error("spdy: control frame of version {0}, only 3 is spoken")]
    Version(u16),
    #[error("spdy: control frame type {kind} with a {len}-byte payload is too short")]
    Short { kind: u16, len: usize },
    #[error("spdy: header block: {0}")]
    Headers(String),
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses the first frame of `buf`: the frame and its length on the wire, or `None` when
/// `buf` does not hold a whole frame yet.
pub fn parse(buf: &[u8]) -> Result<Option<(Frame, usize)>, SpdyError> {
    if buf.len() < 8 {
        return Ok(None);
    }
    let flags = buf[4];
    let len = (u32_at(buf, 4) & 0xff_ffff) as usize;
    if buf.len() < 8 + len {
        return Ok(None);
    }
    let p = &buf[8..8 + len];
    if buf[0] & 0x80 == 0 {
        let frame = Frame::Data {
            id: u32_at(buf, 0) & 0x7fff_ffff,
            flags,
            data: p.to_vec(),
        };
        return Ok(Some((frame, 8 + len)));
    }
    let version = u16::from_be_bytes([buf[0] & 0x7f, buf[1]]);
    if version != 3 {
        return Err(SpdyError::Version(version));
    }
    let kind = u16::from_be_bytes([buf[2], buf[3]]);
    let need = match kind {
        1 => 10,
        3 | 7 | 9 => 8,
        2 | 4 | 6 | 8 => 4,
        _ => 0,
    };
    if p.len() < need {
        return Err(SpdyError::Short { kind, len });
    }
    let id = || u32_at(p, 0) & 0x7fff_ffff;
    let frame = match kind {
        1 => Frame::SynStream {
            id: id(),
            associated: u32_at(p, 4) & 0x7fff_ffff,
            priority: p[8] >> 5,
            flags,
            block: p[10..].to_vec(),
        },
        2 => Frame::SynReply {
            id: id(),
            flags,
            block: p[4..].to_vec(),
        },
        3 => Frame::RstStream {
            id: id(),
            status: u32_at(p, 4),
        },
        4 => {
            let n = u32_at(p, 0) as usize;
            if p.len() < 4 + n * 8 {
                return Err(SpdyError::Short { kind, len });
            }
            Frame::Settings(
                (0..n)
                    .map(|i| {
                        let e = 4 + i * 8;
                        (p[e], u32_at(p, e) & 0xff_ffff, u32_at(p, e + 4))
                    })
                    .collect(),
            )
        }
        6 => Frame::Ping(u32_at(p, 0)),
        7 => Frame::GoAway {
            last_good: id(),
            status: u32_at(p, 4),
        },
        8 => Frame::Headers {
            id: id(),
            flags,
            block: p[4..].to_vec(),
        },
        9 => Frame::WindowUpdate {
            id: id(),
            delta: u32_at(p, 4) & 0x7fff_ffff,
        },
        other => Frame::Other(other),
    };
    Ok(Some((frame, 8 + len)))
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&[0x80, 3]);
    out.extend_from_slice(&kind.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(payload);
    out
}

fn words(ws: &[u32]) -> Vec<u8> {
    ws.iter().flat_map(|w| w.to_be_bytes()).collect()
}

/// A frame's bytes on the wire. Data longer than a frame holds is the caller's to split
/// (see [`data_frames`]).
pub fn encode(frame: &Frame) -> Vec<u8> {
    match frame {
        Frame::SynStream {
            id,
            associated,
            priority,
            flags,
            block,
        } => {
            let mut p = words(&[*id, *associated]);
            p.extend_from_slice(&[priority << 5, 0]);
            p.extend_from_slice(block);
            control(1, *flags, &p)
        }
        Frame::SynReply { id, flags, block } => {
            let mut p = words(&[*id]);
            p.extend_from_slice(block);
            control(2, *flags, &p)
        }
        Frame::RstStream { id, status } => control(3, 0, &words(&[*id, *status])),
        Frame::Settings(entries) => {
            let mut p = words(&[entries.len() as u32]);
            for (flags, id, value) in entries {
                p.push(*flags);
                p.extend_from_slice(&id.to_be_bytes()[1..]);
                p.extend_from_slice(&value.to_be_bytes());
            }
            control(4, 0, &p)
        }
        Frame::Ping(id) => control(6, 0, &words(&[*id])),
        Frame::GoAway { last_good, status } => control(7, 0, &words(&[*last_good, *status])),
        Frame::Headers { id, flags, block } => {
            let mut p = words(&[*id]);
            p.extend_from_slice(block);
            control(8, *flags, &p)
        }
        Frame::WindowUpdate { id, delta } => control(9, 0, &words(&[*id, *delta])),
        Frame::Data { id, flags, data } => {
            let mut out = Vec::with_capacity(8 + data.len());
            out.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
            out.push(*flags);
            out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
            out.extend_from_slice(data);
            out
        }
        Frame::Other(kind) => control(*kind, 0, &[]),
    }
}

/// `data` as data frames of stream `id`, each within a frame's length.
pub fn data_frames(id: u32, data: &[u8]) -> Vec<Frame> {
    data.chunks(MAX_LEN)
        .map(|c| Frame::Data {
            id,
            flags: 0,
            data: c.to_vec(),
        })
        .collect()
}

/// Header blocks of one session: each direction is one zlib stream primed with the SPDY/3
/// dictionary, flushed (not finished) after every block.
pub struct HeaderCodec {
    inflate: Decompress,
    deflate: Compress,
}

impl Default for HeaderCodec {
    fn default() -> Self {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate
            .set_dictionary(dictionary())
            .expect("a fresh deflate stream takes a dictionary");
        Self {
            inflate: Decompress::new(true),
            deflate,
        }
    }
}

impl HeaderCodec {
    /// The name/value pairs of a peer's header block; a value holding NULs is several values.
    pub fn decode(&mut self, block: &[u8]) -> Result<Vec<(String, String)>, SpdyError> {
        let raw = self.inflate(block)?;
        let bad = || SpdyError::Headers("truncated name/value block".into());
        let mut at = 0;
        let mut take = |n: usize| -> Result<&[u8], SpdyError> {
            let s = raw.get(at..at + n).ok_or_else(bad)?;
            at += n;
            Ok(s)
        };
        let count = u32::from_be_bytes(take(4)?.try_into().expect("4 bytes"));
        let mut out = Vec::new();
        for _ in 0..count {
            let n = u32::from_be_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
            let name = String::from_utf8_lossy(take(n)?).to_ascii_lowercase();
            let n = u32::from_be_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
            let value = take(n)?;
            for v in value.split(|b| *b == 0) {
                out.push((name.clone(), String::from_utf8_lossy(v).into_owned()));
            }
        }
        Ok(out)
    }

    fn inflate(&mut self, block: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(1024);
        let mut input = block;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADERS {
                    return Err(SpdyError::Headers("header block too large".into()));
                }
                out.reserve(out.len());
            }
            let before = self.inflate.total_in();
            let result = self
                .inflate
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            input = &input[(self.inflate.total_in() - before) as usize..];
            match result {
                Ok(_) if input.is_empty() && out.len() < out.capacity() => return Ok(out),
                Ok(Status::StreamEnd) => return Ok(out),
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(dictionary())
                        .map_err(|e| SpdyError::Headers(e.to_string()))?;
                }
                Err(e) => return Err(SpdyError::Headers(e.to_string())),
            }
        }
    }

    /// A header block of `headers` (names lower case, as SPDY/3 requires).
    pub fn encode(&mut self, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut raw = words(&[headers.len() as u32]);
        for (name, value) in headers {
            raw.extend_from_slice(&(name.len() as u32).to_be_bytes());
            raw.extend(name.bytes().map(|b| b.to_ascii_lowercase()));
            raw.extend_from_slice(&(value.len() as u32).to_be_bytes());
            raw.extend_from_slice(value.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input = &raw[..];
        loop {
            out.reserve(raw.len() + 64);
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .expect("deflate into memory does not fail");
            input = &input[(self.deflate.total_in() - before) as usize..];
            // A sync flush is complete once input is used up and output did not fill.
            if input.is_empty() && out.len() < out.capacity() {
                return out;
            }
        }
    }
}

/// The first value of header `name` (lower case).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests;
