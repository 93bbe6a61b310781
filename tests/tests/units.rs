//! The systemd units `scripts/install.sh` writes: rendered for both roles into a temporary
//! root (`install.sh render`), with stand-ins for the binaries they run, then checked by the
//! real `systemd-analyze verify`. Needs no root; only systemd-analyze.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const TOKEN: &str = "K10aaaa::abcdef.0123456789abcdef";
const SERVER_TOKEN: &str =
    "K100123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef::server:5ec7e7";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install.sh")
}

/// None when systemd-analyze is missing (skipped, but a failure in CI).
fn have_systemd_analyze() -> bool {
    let ok = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok && std::env::var_os("CI").is_some() {
        panic!("systemd-analyze is not installed");
    }
    if !ok {
        eprintln!("SKIPPED: systemd-analyze is not installed");
    }
    ok
}

/// `install.sh render ROLE ROOT`, then the system's own units and an executable stand-in for
/// every absolute path an `Exec*=` line runs, so `verify` checks our units and nothing else.
fn render(role: &str, root: &Path) {
    render_with(role, root, &[]);
}

/// As [`render`], with server flags (`--cluster-init`, `--server URL`).
fn render_with(role: &str, root: &Path, flags: &[&str]) {
    let mut cmd = Command::new("bash");
    cmd.arg(script())
        .args(["render", role])
        .arg(root)
        .args(flags)
        .env("CORRAL_TOKEN", SERVER_TOKEN);
    if role == "agent" {
        cmd.env(
            "CORRAL_URL",
            "https://192.0.2.10:7443,https://192.0.2.11:7443",
        )
        .env("CORRAL_TOKEN", TOKEN)
        .env("INSTALL_CORRAL_NODE_NAME", "node-1")
        .env("INSTALL_CORRAL_NODE_INTERFACE", "eth1");
    }
    let out = cmd.output().expect("bash runs");
    assert!(
        out.status.success(),
        "install.sh render {role}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let system = root.join("usr/lib/systemd");
    std::fs::create_dir_all(&system).unwrap();
    let cp = Command::new("cp")
        .arg("-a")
        .arg("/usr/lib/systemd/system")
        .arg(&system)
        .status()
        .unwrap();
    assert!(cp.success(), "copying /usr/lib/systemd/system");
    for unit in units(root) {
        let text = std::fs::read_to_string(&unit).unwrap();
        for line in text.lines().filter(|l| l.starts_with("Exec")) {
            let cmdline = line
                .split_once('=')
                .unwrap()
                .1
                .trim_start_matches(['-', '@']);
            let exe = cmdline.split_whitespace().next().unwrap();
            let stub = root.join(exe.trim_start_matches('/'));
            std::fs::create_dir_all(stub.parent().unwrap()).unwrap();
            std::fs::write(&stub, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
}

fn units(root: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(root.join("etc/systemd/system"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("corral-")
        })
        .collect();
    out.sort();
    out
}

/// What `systemd-analyze verify` says about Corral's units (empty: clean).
fn verify(root: &Path) -> String {
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("--man=no")
        .args(units(root))
        .output()
        .expect("systemd-analyze runs");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    let ours: Vec<&str> = text.lines().filter(|l| l.contains("corral")).collect();
    if !out.status.success() && ours.is_empty() {
        return format!("systemd-analyze verify failed: {text}");
    }
    ours.join("\n")
}

#[test]
fn the_units_of_a_server_and_of_an_agent_pass_systemd_analyze_verify() {
    if !have_systemd_analyze() {
        return;
    }
    for role in ["server", "agent"] {
        let root = tempfile::tempdir().unwrap();
        render(role, root.path());
        let names: Vec<String> = units(root.path())
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        let expected: &[&str] = if role == "server" {
            &[
                "corral-agent.service",
                "corral-containerd.service",
                "corral-controlplane.service",
                "corral-proxy.service",
                "corral-scheduler.service",
                "corral-server.target",
            ]
        } else {
            &[
                "corral-agent.service",
                "corral-containerd.service",
                "corral-node.target",
                "corral-proxy.service",
            ]
        };
        assert!(
            expected.iter().all(|u| names.iter().any(|n| n == u)),
            "{role}: units {names:?}"
        );
        assert_eq!(verify(root.path()), "", "{role}: systemd-analyze verify");
    }
}

fn unit_text(root: &Path, unit: &str) -> String {
    std::fs::read_to_string(root.join("etc/systemd/system").join(unit)).unwrap()
}

#[test]
fn servers_on_the_embedded_etcd_run_it_over_tls_as_a_unit_that_passes_verify() {
    if !have_systemd_analyze() {
        return;
    }
    for (flags, state) in [
        (&["--cluster-init"][..], "new"),
        (&["--server", "https://192.0.2.10:7443"][..], "existing"),
    ] {
        let root = tempfile::tempdir().unwrap();
        render_with("server", root.path(), flags);
        let etcd = unit_text(root.path(), "corral-etcd.service");
        let exec = etcd.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
        assert!(
            exec.contains(&format!("--initial-cluster-state {state}")),
            "{flags:?}: {exec}"
        );
        // Clients and peers: TLS only, certificates required.
        assert!(!exec.contains("http://"), "{flags:?}: {exec}");
        for f in [
            "--client-cert-auth",
            "--peer-client-cert-auth",
            "--trusted-ca-file",
        ] {
            assert!(exec.contains(f), "{flags:?}: no {f}: {exec}");
        }
        assert!(etcd.contains("PartOf=corral-server.target"), "{etcd}");
        let target = unit_text(root.path(), "corral-server.target");
        assert!(target.contains("corral-etcd.service"), "{target}");
        let cp = unit_text(root.path(), "corral-controlplane.service");
        assert!(
            cp.contains("After=network-online.target corral-etcd.service")
                && cp.contains("--datastore-endpoint https://127.0.0.1:2379")
                && cp.contains("--etcd-ca-dir"),
            "{cp}"
        );
        // The server token never lands in a unit.
        assert!(!cp.contains("5ec7e7") && !etcd.contains("5ec7e7"), "{cp}");
        assert_eq!(verify(root.path()), "", "{flags:?}: systemd-analyze verify");
    }
    // Without the flags: SQLite, no etcd.
    let root = tempfile::tempdir().unwrap();
    render("server", root.path());
    assert!(!root
        .path()
        .join("etc/systemd/system/corral-etcd.service")
        .exists());
    assert!(!unit_text(root.path(), "corral-controlplane.service").contains("--datastore"));
}

#[test]
fn the_installer_refuses_server_flags_that_do_not_go_together() {
    let root = tempfile::tempdir().unwrap();
    for (flags, says) in [
        (
            &["--cluster-init", "--server", "https://a:7443"][..],
            "give one",
        ),
        (&["--server", "http://a:7443"][..], "https://"),
        (&["--token", "x"][..], "--token is for servers that join"),
        (
            &["--cluster-init", "--datastore-cafile", "/ca"][..],
            "etcd run elsewhere",
        ),
        (&["--bogus"][..], "unknown flag"),
    ] {
        let out = Command::new("bash")
            .arg(script())
            .args(["render", "server"])
            .arg(root.path())
            .args(flags)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(says),
            "{flags:?}: {err}"
        );
    }
}

#[test]
fn an_agent_passes_several_servers_to_its_agent_and_proxy_unchanged() {
    let root = tempfile::tempdir().unwrap();
    render("agent", root.path());
    let servers = "--server https://192.0.2.10:7443,https://192.0.2.11:7443";
    for unit in ["corral-agent.service", "corral-proxy.service"] {
        let text = unit_text(root.path(), unit);
        assert!(text.contains(servers), "{unit}: {text}");
    }
}

#[test]
fn verify_reports_a_unit_whose_binary_is_missing_or_whose_setting_is_wrong() {
    if !have_systemd_analyze() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    render("server", root.path());
    std::fs::remove_file(root.path().join("usr/local/bin/corral-proxy")).unwrap();
    let agent = root.path().join("etc/systemd/system/corral-agent.service");
    let text = std::fs::read_to_string(&agent).unwrap();
    std::fs::write(&agent, text.replace("Type=notify", "Type=notfy")).unwrap();
    let said = verify(root.path());
    assert!(said.contains("corral-proxy"), "{said}");
    assert!(said.contains("notfy"), "{said}");
}

#[test]
fn an_agents_token_is_in_its_private_env_file_never_in_a_unit() {
    let root = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(script())
        .args(["render", "agent"])
        .arg(root.path())
        .env("CORRAL_URL", "https://192.0.2.10:7443")
        .env("CORRAL_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for unit in units(root.path()) {
        let text = std::fs::read_to_string(&unit).unwrap();
        assert!(!text.contains(TOKEN), "{} holds the token", unit.display());
    }
    let env = root.path().join("etc/corral/corral-agent.env");
    assert!(std::fs::read_to_string(&env)
        .unwrap()
        .contains(&format!("CORRAL_TOKEN={TOKEN}")));
    let mode = std::fs::metadata(&env).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", env.display());
    let agent =
        std::fs::read_to_string(root.path().join("etc/systemd/system/corral-agent.service"))
            .unwrap();
    assert!(
        agent.contains("KillMode=process") && agent.contains("Delegate=yes"),
        "{agent}"
    );
}

#[test]
fn the_installer_refuses_an_agent_without_a_token_or_with_a_plain_http_url() {
    let root = tempfile::tempdir().unwrap();
    for (url, token, says) in [
        ("https://192.0.2.10:7443", None, "CORRAL_TOKEN"),
        ("http://192.0.2.10:7443", Some(TOKEN), "https://"),
    ] {
        let mut cmd = Command::new("bash");
        cmd.arg(script())
            .args(["render", "agent"])
            .arg(root.path())
            .env("CORRAL_URL", url)
            .env_remove("CORRAL_TOKEN")
            .env_remove("CORRAL_TOKEN_FILE");
        if let Some(t) = token {
            cmd.env("CORRAL_TOKEN", t);
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{url}: {err}");
    }
}
