//! The real kubectl binaries the kubectl e2e tests drive Corral with, and one way to run them:
//! the dispatcher on PATH (it picks v1.33 for Corral's v1.33), the machine image's v1.32 beside
//! it, and Debian's v1.20 unpacked apart; each run with its own HOME (discovery and OpenAPI
//! caches) and a kubeconfig, bounded by the CLI timeout.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

use crate::{output_within, CLI_TIMEOUT};

/// The Google Cloud SDK's kubectl v1.32, beside the dispatcher, when installed.
pub const V1_32: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.32";

/// kubectl on PATH; `None` skips the test locally (CI installs it, and fails without it).
pub fn on_path() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("kubectl"))
            .find(|p| p.exists())
    });
    if found.is_none() && std::env::var_os("CI").is_some() {
        panic!("kubectl is not installed: CI must install it for this test");
    }
    found
}

/// kubectl v1.32 when installed.
pub fn v1_32() -> Option<PathBuf> {
    Some(PathBuf::from(V1_32)).filter(|p| p.exists())
}

/// Debian's kubectl v1.20 (package kubernetes-client), unpacked apart from the kubectl on PATH
/// into /var/cache (`apt-get download` once). `None` skips that step locally; CI must have it.
pub fn v1_20() -> Option<PathBuf> {
    let dir = Path::new("/var/cache/corral-tests-kubectl120");
    let bin = dir.join("root/usr/bin/kubectl");
    if !bin.exists() {
        let _ = std::fs::create_dir_all(dir);
        let fetched = Command::new("apt-get")
            .args(["download", "kubernetes-client"])
            .current_dir(dir)
            .status()
            .is_ok_and(|s| s.success());
        let deb = std::fs::read_dir(dir).ok().and_then(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "deb"))
        });
        if let (true, Some(deb)) = (fetched, deb) {
            let _ = Command::new("dpkg-deb")
                .arg("-x")
                .arg(&deb)
                .arg(dir.join("root"))
                .status();
        }
    }
    if !bin.exists() {
        if std::env::var_os("CI").is_some() {
            panic!("cannot unpack Debian's kubernetes-client (kubectl v1.20) into {dir:?}");
        }
        return None;
    }
    Some(bin)
}

/// One kubectl binary with its own HOME and a kubeconfig, run from the workspace directory
/// (manifests are named relative to it).
pub struct Kubectl {
    pub bin: PathBuf,
    pub kubeconfig: PathBuf,
    pub home: tempfile::TempDir,
}

impl Kubectl {
    pub fn new(bin: &Path, kubeconfig: &Path) -> Self {
        Self {
            bin: bin.to_path_buf(),
            kubeconfig: kubeconfig.to_path_buf(),
            home: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.home.path())
            .current_dir(crate::workspace_dir());
        c
    }

    /// Runs to the end, within the CLI timeout.
    pub fn output(&self, args: &[&str]) -> Output {
        output_within(self.command(args), CLI_TIMEOUT)
    }

    /// stdout, stderr and whether it succeeded.
    pub fn run(&self, args: &[&str]) -> (String, String, bool) {
        let out = self.output(args);
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            out.status.success(),
        )
    }

    /// stdout of a run that must succeed.
    pub fn ok(&self, args: &[&str]) -> String {
        let (out, err, success) = self.run(args);
        assert!(
            success,
            "{} {} failed:\n{out}\n{err}",
            self.bin.display(),
            args.join(" ")
        );
        out
    }
}

/// A child process killed when the test lets go of it (also on a failed assertion).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
