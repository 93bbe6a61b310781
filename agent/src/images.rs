//! Air-gap images (k3s's `agent/images`): `*.tar` archives in the images directory are
//! imported at start and whenever a new or changed file has settled. `Tracker::plan` decides
//! what to import (pure); `import_new` and `watch` read the directory and import.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::{debug, info, warn};

use crate::runtime::ContainerRuntime;

/// How often the directory is looked at after start.
pub const POLL_EVERY: Duration = Duration::from_secs(2);

/// One archive as listed: what identifies a version of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileStat {
    pub name: String,
    pub size: u64,
    pub mtime: SystemTime,
}

/// What has been imported (or tried: a bad archive is not retried until it changes) and what
/// the previous look saw, to tell a settled file from one still being written.
#[derive(Debug, Default)]
pub struct Tracker {
    done: HashSet<FileStat>,
    last: HashMap<String, (u64, SystemTime)>,
}

impl Tracker {
    /// Names to import now, sorted. At start (`first`) every archive listed; later only one
    /// whose size and mtime are the same as at the previous look, once per (name, size, mtime).
    pub fn plan(&mut self, listing: &[FileStat], first: bool) -> Vec<String> {
        let mut out: Vec<String> = listing
            .iter()
            .filter(|f| !self.done.contains(*f))
            .filter(|f| first || self.last.get(&f.name) == Some(&(f.size, f.mtime)))
            .map(|f| f.name.clone())
            .collect();
        out.sort();
        for f in listing.iter().filter(|f| out.contains(&f.name)) {
            self.done.insert(f.clone());
        }
        self.last = listing
            .iter()
            .map(|f| (f.name.clone(), (f.size, f.mtime)))
            .collect();
        // A removed file is forgotten: copied in again later, it is imported again.
        self.done.retain(|d| self.last.contains_key(&d.name));
        out
    }
}

/// Whether a directory entry is an archive to import: `*.tar`, not hidden (a copy in
/// progress under a temporary dot-name, as rsync makes).
pub fn is_archive(name: &str) -> bool {
    name.ends_with(".tar") && !name.starts_with('.')
}

/// The archives in `dir` (none when it is missing or unreadable).
pub fn list(dir: &Path) -> Vec<FileStat> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let meta = e.metadata().ok()?;
            (meta.is_file() && is_archive(&name)).then(|| FileStat {
                name,
                size: meta.len(),
                mtime: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            })
        })
        .collect()
}

/// Imports what `tracker` says is due in `dir`; returns how many images were imported. A bad
/// archive is logged with its name and skipped.
pub async fn import_new(
    rt: &dyn ContainerRuntime,
    dir: &Path,
    tracker: &mut Tracker,
    first: bool,
) -> usize {
    let mut n = 0;
    for name in tracker.plan(&list(dir), first) {
        let path = dir.join(&name);
        match rt.import_archive(&path).await {
            Ok(images) => {
                info!(archive = %path.display(), images = ?images, "imported images");
                n += images.len();
            }
            Err(e) => {
                warn!(archive = %path.display(), error = %e, "image archive import failed; skipped until the file changes")
            }
        }
    }
    n
}

/// Imports every archive in `dir` now (before pods start), then returns the task that picks
/// up new ones every [`POLL_EVERY`].
pub async fn start(rt: Arc<dyn ContainerRuntime>, dir: PathBuf) -> tokio::task::JoinHandle<()> {
    if let Err(e) = std::fs::create_dir_all(&dir) {
        warn!(dir = %dir.display(), error = %e, "creating the images directory");
    }
    let mut tracker = Tracker::default();
    let n = import_new(rt.as_ref(), &dir, &mut tracker, true).await;
    info!(dir = %dir.display(), images = n, "imported the images directory; watching it for new archives");
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(POLL_EVERY);
        tick.tick().await;
        loop {
            tick.tick().await;
            let n = import_new(rt.as_ref(), &dir, &mut tracker, false).await;
            if n > 0 {
                debug!(dir = %dir.display(), images = n, "imported new archives");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, size: u64, mtime: u64) -> FileStat {
        FileStat {
            name: name.into(),
            size,
            mtime: SystemTime::UNIX_EPOCH + Duration::from_secs(mtime),
        }
    }

    #[test]
    fn archives_are_imported_at_start_and_once_settled_and_each_version_once() {
        let mut t = Tracker::default();
        // (listing, first look, imported now)
        let steps: Vec<(&str, Vec<FileStat>, bool, Vec<&str>)> = vec![
            (
                "at start everything present",
                vec![f("a.tar", 10, 1), f("b.tar", 5, 1)],
                true,
                vec!["a.tar", "b.tar"],
            ),
            (
                "nothing new",
                vec![f("a.tar", 10, 1), f("b.tar", 5, 1)],
                false,
                vec![],
            ),
            (
                "a new file is not imported at first sight",
                vec![f("a.tar", 10, 1), f("b.tar", 5, 1), f("c.tar", 3, 2)],
                false,
                vec![],
            ),
            (
                "still growing",
                vec![f("a.tar", 10, 1), f("b.tar", 5, 1), f("c.tar", 7, 3)],
                false,
                vec![],
            ),
            (
                "settled: same size and mtime twice",
                vec![f("a.tar", 10, 1), f("b.tar", 5, 1), f("c.tar", 7, 3)],
                false,
                vec!["c.tar"],
            ),
            (
                "imported once only",
                vec![f("a.tar", 10, 1), f("b.tar", 5, 1), f("c.tar", 7, 3)],
                false,
                vec![],
            ),
            (
                "a replaced file is a new version",
                vec![f("a.tar", 12, 4), f("b.tar", 5, 1), f("c.tar", 7, 3)],
                false,
                vec![],
            ),
            (
                "and is imported once settled",
                vec![f("a.tar", 12, 4), f("b.tar", 5, 1), f("c.tar", 7, 3)],
                false,
                vec!["a.tar"],
            ),
            (
                "a removed file is forgotten",
                vec![f("a.tar", 12, 4), f("c.tar", 7, 3)],
                false,
                vec![],
            ),
            (
                "and imported again when back",
                vec![f("a.tar", 12, 4), f("b.tar", 5, 1), f("c.tar", 7, 3)],
                false,
                vec![],
            ),
            (
                "once settled",
                vec![f("a.tar", 12, 4), f("b.tar", 5, 1), f("c.tar", 7, 3)],
                false,
                vec!["b.tar"],
            ),
        ];
        for (what, listing, first, want) in steps {
            assert_eq!(t.plan(&listing, first), want, "{what}");
        }
    }

    #[test]
    fn only_visible_tar_files_are_archives() {
        for (name, want) in [
            ("app.tar", true),
            (".app.tar.partial", false),
            (".app.tar", false),
            ("app.tar.gz", false),
            ("notes.txt", false),
        ] {
            assert_eq!(is_archive(name), want, "{name}");
        }
    }
}
