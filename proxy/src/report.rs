//! The proxy's programmed-endpoints report: after each sync the loop publishes the Endpoints
//! revision its rules and routes were built from; this task writes it to the node's report
//! Lease (`corral_api::rules::programmed`) at once, renews it while the proxy lives, and
//! deletes it on a clean stop so no agent waits for a proxy that is gone.

use std::time::Duration;

use corral_api::client::DeleteOptions;
use corral_api::k8s::api::coordination::v1::Lease;
use corral_api::rules::programmed;
use corral_api::Client;
use tokio::sync::watch;

/// How often an unchanged report is renewed (its Lease lasts `programmed::LEASE_SECONDS`).
const RENEW: Duration = Duration::from_secs(2);
/// After a failed write.
const RETRY: Duration = Duration::from_millis(500);

/// Publishes revisions to the report Lease of `node` from the first sync on, until
/// `revisions`' sender is dropped, then deletes it.
pub async fn run(client: Client, node: String, mut revisions: watch::Receiver<i64>) {
    // Nothing before the first sync: a proxy with no rules yet is not waited for.
    if revisions.changed().await.is_err() {
        return;
    }
    loop {
        let revision = *revisions.borrow_and_update();
        let wait = match write(&client, &node, revision).await {
            Ok(()) => {
                tracing::debug!(node = %node, revision, "reported programmed endpoints");
                RENEW
            }
            Err(e) => {
                tracing::warn!(node = %node, revision, error = %e, "writing the programmed-endpoints report failed, retrying");
                RETRY
            }
        };
        // A new revision is written at once; an unchanged one is renewed.
        tokio::select! {
            changed = revisions.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
    let name = programmed::lease_name(&node);
    match client
        .delete::<Lease>(programmed::NAMESPACE, &name, DeleteOptions::default())
        .await
    {
        Ok(_) => tracing::info!(node = %node, "removed the programmed-endpoints report"),
        Err(e) if e.is_not_found() => {}
        Err(e) => {
            tracing::warn!(node = %node, error = %e, "removing the programmed-endpoints report failed")
        }
    }
}

/// One write of the report: an unconditional update (only this proxy writes it), or a create
/// the first time.
async fn write(client: &Client, node: &str, revision: i64) -> corral_api::client::Result<()> {
    let lease = programmed::report(node, revision, jiff::Timestamp::now());
    match client.update(&lease).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => match client.create(&lease).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_already_exists() => client.update(&lease).await.map(drop),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    }
}
