//! Size limits as Kubernetes has them, shared by the server (which enforces them with a clear
//! error) and the clients (whose gRPC limits follow from them): a request body of at most
//! 3 MiB (apiserver's MaxRequestBodyBytes) and a stored object of at most 1.5 MiB (etcd's
//! default `--max-request-bytes`).

/// The largest request body (one object, JSON) the API accepts.
pub const MAX_REQUEST_BODY: usize = 3 * 1024 * 1024;

/// The largest object the API stores, as encoded.
pub const MAX_STORED_OBJECT: usize = 1536 * 1024;

/// The largest gRPC request message: one body plus its envelope.
pub const MAX_REQUEST_MESSAGE: usize = MAX_REQUEST_BODY + (1 << 20);

/// The largest gRPC answer a client takes (a list of many objects): a bound against a
/// server gone wrong, far above any list a lab cluster produces.
pub const MAX_RESPONSE_MESSAGE: usize = 512 * 1024 * 1024;

/// How much larger a value is than a limit, for an error naming both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{size} bytes, more than the limit of {limit} bytes")]
pub struct TooLarge {
    pub size: usize,
    pub limit: usize,
}

/// Checks `size` against `limit`.
pub fn check(size: usize, limit: usize) -> Result<(), TooLarge> {
    if size > limit {
        Err(TooLarge { size, limit })
    } else {
        Ok(())
    }
}

/// HTTP/2 flow-control windows of the API's connections. Each stream may hold at most its
/// stream window of data its reader has not taken, and all streams of a connection share the
/// connection window: with hyper's defaults (1 MiB each on a server) one stalled stream (an
/// exec whose process takes no input, a port-forward to a pod that does not read) would hold
/// the whole connection and stall every other stream on it. A connection window many times
/// the stream window keeps one stalled stream, or dozens, from touching the others.
pub const SERVER_STREAM_WINDOW: u32 = 512 * 1024;
/// See [`SERVER_STREAM_WINDOW`]: 64 stalled streams before a connection stalls.
pub const SERVER_CONNECTION_WINDOW: u32 = 32 * 1024 * 1024;
/// A client's receive windows (output a reader has not taken yet, per stream and in all).
pub const CLIENT_STREAM_WINDOW: u32 = 1024 * 1024;
/// See [`CLIENT_STREAM_WINDOW`].
pub const CLIENT_CONNECTION_WINDOW: u32 = 64 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_up_to_the_limit_pass_and_one_byte_more_does_not() {
        let cases = [
            (0, MAX_STORED_OBJECT, true),
            (MAX_STORED_OBJECT, MAX_STORED_OBJECT, true),
            (MAX_STORED_OBJECT + 1, MAX_STORED_OBJECT, false),
            (50 << 20, MAX_REQUEST_BODY, false),
        ];
        for (size, limit, ok) in cases {
            assert_eq!(check(size, limit).is_ok(), ok, "{size} vs {limit}");
        }
        assert_eq!(
            check(10, 5).unwrap_err().to_string(),
            "10 bytes, more than the limit of 5 bytes"
        );
    }
}
