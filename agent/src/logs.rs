//! Container logs: answers the tunnel's `LogOpen` requests (`tunnel.rs`) from the files the
//! log copiers write (`pods/<uid>/logs/<container>/<attempt>.log`, `corral_logger::format`), with tail,
//! previous, follow, timestamps, since and a byte limit.

use std::path::{Path, PathBuf};
use std::time::Duration;

use corral_api::rules::names::{path_component, NotALabel};
use corral_proto as pb;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use crate::pod::manager::PodIndex;
use corral_logger::format::{self as logformat, View};
use jiff::Timestamp;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("pod {pod:?} in namespace {namespace:?} is not running on this node")]
    NoPod { namespace: String, pod: String },
    #[error("a container name must be specified for pod {pod:?}, choose one of: {choices:?}")]
    Ambiguous { pod: String, choices: Vec<String> },
    #[error("container {container:?} in pod {pod:?} has no logs yet")]
    NoLogs { pod: String, container: String },
    #[error("previous terminated container {container:?} in pod {pod:?} not found")]
    NoPrevious { pod: String, container: String },
    #[error("pod {pod:?}: {source}")]
    BadContainerName {
        pod: String,
        #[source]
        source: NotALabel,
    },
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Attempt numbers that have a log file, ascending.
fn attempts(dir: &Path) -> Vec<u32> {
    let mut out: Vec<u32> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_suffix(".log"))
                        .and_then(|n| n.parse().ok())
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort_unstable();
    out
}

/// Which file answers a request, and the newest attempt at that time.
pub fn resolve(
    data_dir: &Path,
    index: &PodIndex,
    req: &pb::LogsRequest,
) -> Result<(PathBuf, PathBuf, u32), LogError> {
    let uid = index
        .uid(&req.namespace, &req.pod)
        .ok_or_else(|| LogError::NoPod {
            namespace: req.namespace.clone(),
            pod: req.pod.clone(),
        })?;
    let logs = data_dir.join("pods").join(uid).join("logs");
    let container = if req.container.is_empty() {
        let mut names: Vec<String> = std::fs::read_dir(&logs)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().to_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        match names.len() {
            1 => names.remove(0),
            0 => {
                return Err(LogError::NoLogs {
                    pod: req.pod.clone(),
                    container: String::new(),
                })
            }
            _ => {
                return Err(LogError::Ambiguous {
                    pod: req.pod.clone(),
                    choices: names,
                })
            }
        }
    } else {
        req.container.clone()
    };
    // The name came from a request: never let it leave the pod's log directory.
    let dir = logs.join(path_component("container", &container).map_err(|source| {
        LogError::BadContainerName {
            pod: req.pod.clone(),
            source,
        }
    })?);
    let all = attempts(&dir);
    let newest = *all.last().ok_or_else(|| LogError::NoLogs {
        pod: req.pod.clone(),
        container: container.clone(),
    })?;
    let attempt = if req.previous {
        *all.iter()
            .rev()
            .nth(1)
            .ok_or_else(|| LogError::NoPrevious {
                pod: req.pod.clone(),
                container: container.clone(),
            })?
    } else {
        newest
    };
    Ok((dir.join(format!("{attempt}.log")), dir, newest))
}

/// Where the last `n` lines of `file` start, reading it backwards a block at a time: a tail
/// of a large log costs one block of memory, not the whole file.
pub async fn tail_start(file: &mut tokio::fs::File, n: usize) -> std::io::Result<u64> {
    const BLOCK: u64 = 64 * 1024;
    let len = file.metadata().await?.len();
    if n == 0 {
        return Ok(len);
    }
    let mut end = len;
    let mut seen = 0;
    let mut block = vec![0u8; BLOCK as usize];
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let chunk = &mut block[..(end - start) as usize];
        file.seek(std::io::SeekFrom::Start(start)).await?;
        file.read_exact(chunk).await?;
        for (i, b) in chunk.iter().enumerate().rev() {
            // The file's final newline ends the last line; it does not start one.
            if *b == b'\n' && start + i as u64 + 1 != len {
                seen += 1;
                if seen == n {
                    return Ok(start + i as u64 + 1);
                }
            }
        }
        end = start;
    }
    Ok(0)
}

/// Streams one request's data into `out` until done (or `follow` ends).
pub async fn serve(
    data_dir: PathBuf,
    index: PodIndex,
    req: pb::LogsRequest,
    out: mpsc::Sender<Result<Vec<u8>, String>>,
) {
    let (path, dir, newest) = match resolve(&data_dir, &index, &req) {
        Ok(r) => r,
        Err(e) => {
            let _ = out.send(Err(e.to_string())).await;
            return;
        }
    };
    let ioerr = |source| LogError::Io {
        path: path.clone(),
        source,
    };
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => {
            let _ = out.send(Err(ioerr(e).to_string())).await;
            return;
        }
    };
    let start = if req.tail_lines >= 0 {
        tail_start(&mut file, req.tail_lines as usize).await
    } else {
        Ok(0)
    };
    match start {
        Ok(start) => {
            if file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
                return;
            }
        }
        Err(e) => {
            let _ = out.send(Err(ioerr(e).to_string())).await;
            return;
        }
    };
    let view = View {
        timestamps: req.timestamps,
        since: since(&req),
    };
    let mut left = (req.limit_bytes > 0).then_some(req.limit_bytes as usize);
    let mut buf = vec![0u8; 32 * 1024];
    // Bytes of a line not read to its end yet.
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let n = match file.read(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                let _ = out.send(Err(ioerr(e).to_string())).await;
                return;
            }
        };
        if n > 0 {
            carry.extend_from_slice(&buf[..n]);
            let shown = render_lines(&view, &mut carry);
            if !send(&out, shown, &mut left).await {
                return;
            }
            continue;
        }
        // At the end: done unless following; a follow ends when the container is replaced
        // by a newer attempt or the pod leaves the node.
        if !req.follow || req.previous {
            let mut shown = Vec::new();
            if logformat::parse(&carry).is_some() {
                view.render(&carry, &mut shown);
            } else {
                // A raw file's last line, as written (no newline added).
                shown = std::mem::take(&mut carry);
            }
            send(&out, shown, &mut left).await;
            return;
        }
        if index.uid(&req.namespace, &req.pod).is_none()
            || attempts(&dir).last().is_some_and(|a| *a > newest)
        {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = out.closed() => return,
        }
    }
}

/// The first time a request shows: `since_time`, else `since_seconds` ago.
fn since(req: &pb::LogsRequest) -> Option<Timestamp> {
    if let Ok(t) = req.since_time.parse::<Timestamp>() {
        return Some(t);
    }
    (req.since_seconds > 0).then(|| {
        Timestamp::now()
            .checked_sub(jiff::SignedDuration::from_secs(req.since_seconds))
            .unwrap_or(Timestamp::MIN)
    })
}

/// What the complete lines at the head of `carry` show; they are taken out of it.
fn render_lines(view: &View, carry: &mut Vec<u8>) -> Vec<u8> {
    let Some(end) = carry.iter().rposition(|b| *b == b'\n') else {
        return Vec::new();
    };
    let mut shown = Vec::with_capacity(end + 1);
    for line in carry[..end].split(|b| *b == b'\n') {
        view.render(line, &mut shown);
    }
    carry.drain(..=end);
    shown
}

/// Sends `data` within the byte limit; false when the reader is gone or the limit is reached.
async fn send(
    out: &mpsc::Sender<Result<Vec<u8>, String>>,
    mut data: Vec<u8>,
    left: &mut Option<usize>,
) -> bool {
    let mut done = false;
    if let Some(l) = left {
        if data.len() >= *l {
            data.truncate(*l);
            done = true;
        }
        *l -= data.len();
    }
    if !data.is_empty() && out.send(Ok(data)).await.is_err() {
        return false;
    }
    !done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_name_that_is_a_path_never_leaves_the_log_directory() {
        let dir = tempfile::tempdir().unwrap();
        let index = PodIndex::default();
        let mut pod = k8s_openapi::api::core::v1::Pod::default();
        pod.metadata.namespace = Some("default".into());
        pod.metadata.name = Some("web".into());
        pod.metadata.uid = Some("u1".into());
        index.set(&pod, true);
        for container in ["../../../etc", "/etc", "..", "a/b"] {
            let req = pb::LogsRequest {
                namespace: "default".into(),
                pod: "web".into(),
                container: container.into(),
                ..Default::default()
            };
            let err = resolve(dir.path(), &index, &req).unwrap_err();
            assert!(
                matches!(err, LogError::BadContainerName { .. }),
                "{container}: {err}"
            );
        }
    }

    #[tokio::test]
    async fn tail_keeps_the_last_lines_reading_backwards_block_by_block() {
        let dir = tempfile::tempdir().unwrap();
        // A line crossing the 64 KiB block boundary, and a file without a final newline.
        let long = "x".repeat(70 * 1024);
        let cases: Vec<(String, usize, String)> = vec![
            ("a\nb\nc\n".into(), 2, "b\nc\n".into()),
            ("a\nb\nc\n".into(), 10, "a\nb\nc\n".into()),
            ("a\nb\nc\n".into(), 0, "".into()),
            ("a\nb".into(), 1, "b".into()),
            (format!("a\n{long}\nz\n"), 2, format!("{long}\nz\n")),
            (format!("{long}\n"), 1, format!("{long}\n")),
            (String::new(), 3, String::new()),
        ];
        for (i, (content, n, want)) in cases.into_iter().enumerate() {
            let path = dir.path().join(format!("{i}.log"));
            std::fs::write(&path, &content).unwrap();
            let mut f = tokio::fs::File::open(&path).await.unwrap();
            let start = tail_start(&mut f, n).await.unwrap() as usize;
            assert_eq!(&content[start..], want, "case {i}, {n} lines");
        }
    }
}
