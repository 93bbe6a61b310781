//! The Kubernetes remote-command channel protocols (`v4.channel.k8s.io`,
//! `v5.channel.k8s.io`) as pure functions: subprotocol negotiation, a client's binary message
//! decoded to what it asks of the pod, the pod's output framed on its channel, and the
//! `metav1.Status` the error channel carries when the stream ends.

use corral_proto as pb;
use serde_json::{json, Value};

/// Channel numbers: the first byte of every binary message.
pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
/// v5 only: `[CLOSE, channel]` half-closes the named channel (the client's stdin).
pub const CLOSE: u8 = 255;

/// The subprotocols served, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    V5,
    V4,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::V5 => "v5.channel.k8s.io",
            Protocol::V4 => "v4.channel.k8s.io",
        }
    }
}

/// The protocol to speak given the client's `Sec-WebSocket-Protocol` header values (each a
/// comma-separated list): the newest one both sides speak, as the API server picks.
pub fn negotiate<'a>(offered: impl IntoIterator<Item = &'a str>) -> Option<Protocol> {
    let offered: Vec<&str> = offered
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    [Protocol::V5, Protocol::V4]
        .into_iter()
        .find(|p| offered.contains(&p.name()))
}

/// What one client message asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    Stdin(Vec<u8>),
    Resize {
        width: u32,
        height: u32,
    },
    /// The client closed its stdin (v5's close signal).
    StdinEof,
    /// Nothing for the pod: an empty message, or a channel a client does not write.
    Nothing,
}

/// Why a client message could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ChannelError {
    #[error("resize channel: {0} is not a terminal size")]
    Resize(String),
    #[error("channel {0}: a client does not write to it")]
    Channel(u8),
}

/// Kubernetes' terminal size on the resize channel.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Size {
    #[serde(default)]
    width: u16,
    #[serde(default)]
    height: u16,
}

/// Decodes a client's binary message.
pub fn decode(protocol: Protocol, msg: &[u8]) -> Result<Inbound, ChannelError> {
    let Some((&channel, data)) = msg.split_first() else {
        return Ok(Inbound::Nothing);
    };
    match channel {
        STDIN if data.is_empty() => Ok(Inbound::Nothing),
        STDIN => Ok(Inbound::Stdin(data.to_vec())),
        RESIZE => {
            let size: Size = serde_json::from_slice(data)
                .map_err(|_| ChannelError::Resize(String::from_utf8_lossy(data).into_owned()))?;
            Ok(Inbound::Resize {
                width: size.width.into(),
                height: size.height.into(),
            })
        }
        CLOSE if protocol == Protocol::V5 => match data {
            [STDIN] => Ok(Inbound::StdinEof),
            // Closing a channel the server writes only ends the client's interest in it.
            _ => Ok(Inbound::Nothing),
        },
        other => Err(ChannelError::Channel(other)),
    }
}

/// A message carrying `data` on `channel`.
pub fn frame(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 1);
    out.push(channel);
    out.extend_from_slice(data);
    out
}

/// The error channel's `metav1.Status` for how the pod side ended: Success, a non-zero exit
/// code as kubelet reports it (reason `NonZeroExitCode`, the code in an `ExitCode` cause,
/// which kubectl turns into its own exit code), or the error that ended the stream.
pub fn end_status(end: &pb::StreamEnd) -> Value {
    if !end.error.is_empty() {
        return failure(&end.error, "InternalError", 500);
    }
    match end.exit_code {
        None | Some(0) => json!({"metadata": {}, "status": "Success"}),
        Some(code) => {
            let mut s = failure(
                &format!("command terminated with non-zero exit code: exit status {code}"),
                "NonZeroExitCode",
                500,
            );
            s["details"] = json!({"causes": [{"reason": "ExitCode", "message": code.to_string()}]});
            s
        }
    }
}

/// A failed stream's Status.
pub fn failure(message: &str, reason: &str, code: u16) -> Value {
    json!({"metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_protocol_both_sides_speak_is_chosen() {
        let cases: &[(&[&str], Option<Protocol>)] = &[
            (
                &["v5.channel.k8s.io, v4.channel.k8s.io, v3.channel.k8s.io"],
                Some(Protocol::V5),
            ),
            (
                &["v4.channel.k8s.io", "v5.channel.k8s.io"],
                Some(Protocol::V5),
            ),
            (&["v4.channel.k8s.io,v3.channel.k8s.io"], Some(Protocol::V4)),
            (&["v3.channel.k8s.io", "channel.k8s.io"], None),
            (&["SPDY/3.1+portforward.k8s.io"], None),
            (&[], None),
        ];
        for (offered, want) in cases {
            assert_eq!(negotiate(offered.iter().copied()), *want, "{offered:?}");
        }
    }

    #[test]
    fn client_messages_decode_by_their_channel_byte() {
        use Protocol::{V4, V5};
        let cases: &[(Protocol, &[u8], Result<Inbound, ChannelError>)] = &[
            (V5, b"\x00hi\n", Ok(Inbound::Stdin(b"hi\n".to_vec()))),
            (V4, b"\x00", Ok(Inbound::Nothing)),
            (V4, b"", Ok(Inbound::Nothing)),
            (
                V5,
                b"\x04{\"Width\":80,\"Height\":24}",
                Ok(Inbound::Resize {
                    width: 80,
                    height: 24,
                }),
            ),
            (
                V4,
                b"\x04{\"Width\":120}",
                Ok(Inbound::Resize {
                    width: 120,
                    height: 0,
                }),
            ),
            (
                V5,
                b"\x04{\"Width\":-1}",
                Err(ChannelError::Resize("{\"Width\":-1}".into())),
            ),
            (V5, b"\xff\x00", Ok(Inbound::StdinEof)),
            (V5, b"\xff\x01", Ok(Inbound::Nothing)),
            // v4 has no close signal: 255 is no channel of it.
            (V4, b"\xff\x00", Err(ChannelError::Channel(255))),
            (V5, b"\x01out", Err(ChannelError::Channel(1))),
            (V5, b"\x03{}", Err(ChannelError::Channel(3))),
        ];
        for (protocol, msg, want) in cases {
            assert_eq!(&decode(*protocol, msg), want, "{protocol:?} {msg:?}");
        }
    }

    #[test]
    fn output_is_framed_behind_its_channel_byte() {
        assert_eq!(frame(STDOUT, b"host\n"), b"\x01host\n");
        assert_eq!(frame(STDERR, b""), b"\x02");
    }

    #[test]
    fn the_end_of_a_stream_becomes_the_status_kubectl_reads_its_exit_code_from() {
        let end = |exit_code, error: &str| pb::StreamEnd {
            exit_code,
            error: error.into(),
        };
        let success = json!({"metadata": {}, "status": "Success"});
        let cases = [
            (end(Some(0), ""), success.clone()),
            (end(None, ""), success),
            (
                end(Some(3), ""),
                json!({"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
                    "message": "command terminated with non-zero exit code: exit status 3",
                    "code": 500,
                    "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}}),
            ),
            (
                end(None, "container app not found"),
                json!({"metadata": {}, "status": "Failure", "reason": "InternalError",
                    "message": "container app not found", "code": 500}),
            ),
        ];
        for (end, want) in cases {
            assert_eq!(end_status(&end), want, "{end:?}");
        }
    }
}
