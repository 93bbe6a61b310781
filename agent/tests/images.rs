//! Air-gap images against a real containerd: archives in the images directory are imported
//! at start, one copied in while the agent runs becomes an image within a few polls, and a
//! garbage archive is logged and skipped without stopping the others.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_agent::runtime::ContainerRuntime;

const SLEEPER: &str = "docker.io/corral-test/sleeper:v1";
const CRASHER: &str = "docker.io/corral-test/crasher:v1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_copied_in_after_start_becomes_an_image_and_garbage_does_not_stop_it() {
    skip_unless_runnable!();
    let ctd = common::ContainerdFixture::start();
    let rt: Arc<dyn ContainerRuntime> = Arc::new(ctd.runtime().await);
    let dir = ctd.path().join("images");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("0-garbage-at-start.tar"), b"not an archive").unwrap();
    std::fs::copy(common::image_archive(SLEEPER), dir.join("sleeper.tar")).unwrap();

    let watching = corral_agent::images::start(rt.clone(), dir.clone()).await;
    assert!(
        rt.image(SLEEPER).await.unwrap().is_some(),
        "an archive present at start is imported before start returns"
    );
    assert!(rt.image(CRASHER).await.unwrap().is_none());

    std::fs::write(dir.join("1-garbage.tar"), vec![7u8; 4096]).unwrap();
    std::fs::copy(common::image_archive(CRASHER), dir.join("crasher.tar")).unwrap();
    let start = Instant::now();
    while rt.image(CRASHER).await.unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "crasher.tar copied in after start was never imported"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        !watching.is_finished(),
        "a bad archive never stops the watch"
    );
    watching.abort();
}
