//! Request bodies: read whole, within the size limit (their media types are `media.rs`'s).

use bytes::Bytes;
use corral_api::status::StatusReason;
use http_body_util::BodyExt;

use super::response::{self, Body, Failure};

/// Reads the whole body, refusing one larger than a request may be.
pub async fn read(body: Body) -> Result<Bytes, Failure> {
    let max = corral_api::rules::limits::MAX_REQUEST_BODY;
    match http_body_util::Limited::new(body, max + 1).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => Err(response::failure(
            StatusReason::RequestEntityTooLarge,
            format!("the request body could not be read: {e}"),
        )),
    }
}
