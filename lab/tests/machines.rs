//! Real lab machines (root, systemd-nspawn, the cached rootfs): two machines boot systemd,
//! reach each other over TCP, pass exit codes through `exec`, survive poweroff and boot with
//! their upper kept, and delete leaves no bridge, cgroup, process or state behind.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use corral_lab::{CreateRequest, Options, State};

/// Why these tests cannot run here, or None.
fn skip_reason() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("needs root (systemd-nspawn, bridges, cgroups)".into());
    }
    for tool in ["systemd-nspawn", "debootstrap", "nsenter"] {
        if corral_lab::which(tool).is_none() {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

macro_rules! skip_unless_lab {
    () => {
        if let Some(why) = skip_reason() {
            if std::env::var_os("CI").is_some() {
                panic!("lab test cannot run in CI: {why}");
            }
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
}

fn options() -> Options {
    let exe = std::env::current_exe().expect("test binary path");
    let mut opts = Options::beside(&exe);
    // Bound into the machines at /opt/corral/bin: the target dir (deps' parent).
    opts.bin_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    opts
}

/// A lab name unique to this test and process.
fn lab_name(test: &str) -> String {
    format!("t{}-{test}", std::process::id() % 100_000)
}

/// Deletes the lab when the test ends, failed or not.
struct Guard {
    opts: Options,
    name: String,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let (opts, name) = (self.opts.clone(), self.name.clone());
        // Drop runs inside the test's runtime: delete on a runtime of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            if let Err(e) = rt.block_on(corral_lab::delete(&opts, &name, &|_| {})) {
                eprintln!("cleanup of lab {name}: {e}");
            }
        })
        .join();
    }
}

fn progress(name: &str) -> impl Fn(&str) + Sync + '_ {
    move |m: &str| eprintln!("[lab {name}] {m}")
}

fn sh(opts: &Options, machine: &str, script: &str) -> (i32, String) {
    let out = corral_lab::exec_output(opts, machine, &["sh", "-c", script]).expect("exec");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

fn processes_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(needle))
        .collect()
}

fn assert_nothing_left(opts: &Options, state: &State) {
    let l = &state.layout;
    assert!(
        !corral_lab::host::link_exists(&l.bridge),
        "bridge {} left",
        l.bridge
    );
    for ms in &state.machines {
        for dir in &ms.cgroups {
            assert!(!dir.exists(), "cgroup {} left", dir.display());
        }
        assert!(
            corral_lab::host::cgroup_dirs(&ms.name)
                .iter()
                .all(|d| !d.exists()),
            "cgroups of {} left",
            ms.name
        );
        let propagate = Path::new("/run/systemd/nspawn/propagate").join(&ms.name);
        assert!(!propagate.exists(), "{} left", propagate.display());
        let procs = processes_mentioning(&format!("--machine={}", ms.name));
        assert!(procs.is_empty(), "processes of {} left: {procs:?}", ms.name);
    }
    assert!(!l.dir.exists(), "{} left", l.dir.display());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = l.dir.display().to_string();
    assert!(!mounts.contains(&dir), "mounts under {dir} left:\n{mounts}");
    assert!(State::load(&opts.base, &l.name).unwrap().is_none());
    assert!(corral_lab::list(opts).iter().all(|i| i.name != l.name));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_machines_boot_systemd_talk_over_tcp_survive_poweroff_and_leave_nothing_behind() {
    skip_unless_lab!();
    let opts = options();
    let name = lab_name("pair");
    let _guard = Guard {
        opts: opts.clone(),
        name: name.clone(),
    };
    let t = Instant::now();
    let req = CreateRequest {
        name: name.clone(),
        machines: 2,
        images: vec![],
        install: false,
        timeout: Duration::from_secs(60),
    };
    let state = corral_lab::create(&opts, &req, &progress(&name))
        .await
        .expect("create");
    eprintln!("created 2 machines in {:.2}s", t.elapsed().as_secs_f64());
    let (m0, m1) = (&state.layout.machines[0], &state.layout.machines[1]);

    // Real systemd as PID 1, the machine's own hostname and address.
    for m in [m0, m1] {
        assert_eq!(
            sh(&opts, &m.name, "cat /proc/1/comm"),
            (0, "systemd".into())
        );
        assert_eq!(sh(&opts, &m.name, "hostname"), (0, m.name.clone()));
        let (_, addrs) = sh(&opts, &m.name, "ip -4 -o addr show dev host0");
        assert!(addrs.contains(&format!("{}/24", m.ip)), "{addrs}");
        let (_, routes) = sh(&opts, &m.name, "ip route show default");
        assert!(
            routes.is_empty(),
            "lab machines have no route out: {routes}"
        );
        let (_, routes) = sh(&opts, &m.name, "ip route show 10.43.0.0/16");
        let want = format!("10.43.0.0/16 via {} dev host0", state.layout.bridge_ip);
        assert!(
            routes.starts_with(&want),
            "the Service range to the host: {routes}"
        );
    }
    // The scripts and the binaries are bound read-only at /opt/corral.
    let (code, listing) = sh(&opts, &m0.name, "ls /opt/corral");
    assert_eq!(code, 0);
    for script in [
        "install.sh",
        "killall.sh",
        "uninstall.sh",
        "host-state.sh",
        "bin",
    ] {
        assert!(listing.lines().any(|l| l == script), "{script}: {listing}");
    }
    let (_, bins) = sh(&opts, &m0.name, "ls /opt/corral/bin");
    assert!(
        bins.lines().any(|l| l == "deps"),
        "the binaries dir is bound: {bins}"
    );
    assert_ne!(
        sh(&opts, &m0.name, "touch /opt/corral/bin/x").0,
        0,
        "read-only"
    );
    let info = corral_lab::list(&opts);
    let row = info.iter().find(|i| i.name == name).expect("listed");
    assert_eq!((row.machines, row.state()), (2, "running".to_string()));

    // Machine 0 reaches machine 1 over TCP: busybox httpd as a unit of machine 1's systemd.
    let (code, _) = sh(
        &opts,
        &m1.name,
        "mkdir -p /srv/www && echo hello-from-$(hostname) >/srv/www/index.html && \
         systemd-run --unit=lab-web busybox httpd -f -p 8080 -h /srv/www",
    );
    assert_eq!(code, 0);
    let url = format!("http://{}:8080/index.html", m1.ip);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body) = sh(&opts, &m0.name, &format!("busybox wget -q -O- {url}"));
        if code == 0 {
            assert_eq!(body, format!("hello-from-{}", m1.name));
            break;
        }
        assert!(Instant::now() < deadline, "machine 0 cannot reach {url}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Exit codes pass through.
    let argv: Vec<String> = ["sh", "-c", "exit 7"].map(String::from).to_vec();
    assert_eq!(corral_lab::exec(&opts, &m0.name, &argv).unwrap(), 7);
    let argv: Vec<String> = ["true"].map(String::from).to_vec();
    assert_eq!(corral_lab::exec(&opts, &m0.name, &argv).unwrap(), 0);

    // Poweroff keeps the upper; boot brings the same machine back.
    let (_, machine_id) = sh(&opts, &m1.name, "cat /etc/machine-id");
    assert_eq!(sh(&opts, &m1.name, "echo kept >/root/marker").0, 0);
    let took = corral_lab::poweroff(&opts, &m1.name)
        .await
        .expect("poweroff");
    eprintln!("poweroff in {:.2}s", took.as_secs_f64());
    assert!(corral_lab::exec_output(&opts, &m1.name, &["true"]).is_err());
    let row = corral_lab::list(&opts)
        .into_iter()
        .find(|i| i.name == name)
        .unwrap();
    assert_eq!(row.running, 1);
    assert!(m1.upper().join("root/marker").exists());
    let took = corral_lab::boot(&opts, &m1.name).await.expect("boot");
    eprintln!("boot in {:.2}s", took.as_secs_f64());
    assert_eq!(sh(&opts, &m1.name, "cat /root/marker"), (0, "kept".into()));
    assert_eq!(sh(&opts, &m1.name, "cat /etc/machine-id"), (0, machine_id));
    assert_eq!(
        sh(&opts, &m1.name, "cat /proc/1/comm"),
        (0, "systemd".into())
    );
    assert!(matches!(
        corral_lab::boot(&opts, &m1.name).await,
        Err(corral_lab::Error::Running(_))
    ));

    // Delete leaves nothing, and deleting again is fine.
    let state = State::load(&opts.base, &name).unwrap().expect("state");
    let t = Instant::now();
    corral_lab::delete(&opts, &name, &progress(&name))
        .await
        .expect("delete");
    eprintln!("deleted in {:.2}s", t.elapsed().as_secs_f64());
    assert_nothing_left(&opts, &state);
    corral_lab::delete(&opts, &name, &progress(&name))
        .await
        .expect("second delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_created_lab_is_deleted_without_leftovers() {
    skip_unless_lab!();
    let mut opts = options();
    let name = lab_name("half");
    let _guard = Guard {
        opts: opts.clone(),
        name: name.clone(),
    };
    // Machines are started, then create gives up before they have booted.
    opts.boot_timeout = Duration::from_millis(1);
    let req = CreateRequest {
        name: name.clone(),
        machines: 2,
        images: vec![],
        install: false,
        timeout: Duration::from_secs(10),
    };
    let err = corral_lab::create(&opts, &req, &progress(&name))
        .await
        .expect_err("boot cannot finish in 1 ms");
    assert!(matches!(err, corral_lab::Error::Timeout { .. }), "{err}");
    let state = State::load(&opts.base, &name).unwrap().expect("state kept");
    assert!(state.machines.iter().any(|m| m.pid.is_some()));
    corral_lab::delete(&opts, &name, &progress(&name))
        .await
        .expect("delete");
    assert_nothing_left(&opts, &state);
}

#[test]
fn unknown_machines_and_labs_are_named_in_errors() {
    let opts = Options {
        base: PathBuf::from("/nonexistent/corral-lab"),
        ..options()
    };
    let err = corral_lab::exec_output(&opts, "nolab-0", &["true"]).unwrap_err();
    assert_eq!(err.to_string(), "machine \"nolab-0\" not found in any lab");
    let err = corral_lab::exec_output(&opts, "no_index", &["true"]).unwrap_err();
    assert_eq!(err.to_string(), "machine \"no_index\" not found in any lab");
}
