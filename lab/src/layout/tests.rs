use super::*;

#[test]
fn lab_names_follow_hostname_rules() {
    let cases = [
        ("lab", true),
        ("a", true),
        ("my-lab-2", true),
        ("", false),
        ("2lab", false),
        ("Lab", false),
        ("lab-", false),
        ("lab_x", false),
        ("abcdefghijklmnopqrstu", false),
    ];
    for (name, ok) in cases {
        assert_eq!(validate_name(name).is_ok(), ok, "{name:?}");
    }
}

#[test]
fn the_lowest_unused_index_is_chosen() {
    let cases: [(&[u8], Option<u8>); 4] = [
        (&[], Some(0)),
        (&[0, 1, 3], Some(2)),
        (&[1], Some(0)),
        (&(0..MAX_LABS).collect::<Vec<_>>(), None),
    ];
    for (used, want) in cases {
        assert_eq!(free_index(used).ok(), want, "{used:?}");
    }
}

#[test]
fn machines_get_names_addresses_and_directories_from_the_lab_index() {
    let l = layout("demo", 3, 3, Path::new("/var/lib/corral-lab")).unwrap();
    assert_eq!(l.bridge, "crlab3");
    assert_eq!(l.bridge_ip, "10.77.3.1");
    assert_eq!(l.subnet, "10.77.3.0/24");
    assert_eq!(l.server_url(), "https://10.77.3.10:7443");
    assert_eq!(
        l.kubeconfig(),
        Path::new("/var/lib/corral-lab/demo/admin.kubeconfig")
    );
    assert_eq!(
        l.state_file(),
        Path::new("/var/lib/corral-lab/demo/state.json")
    );
    let rows: Vec<(&str, &str, PathBuf)> = l
        .machines
        .iter()
        .map(|m| (m.name.as_str(), m.ip.as_str(), m.upper()))
        .collect();
    assert_eq!(
        rows,
        vec![
            (
                "demo-0",
                "10.77.3.10",
                "/var/lib/corral-lab/demo/demo-0/upper".into()
            ),
            (
                "demo-1",
                "10.77.3.11",
                "/var/lib/corral-lab/demo/demo-1/upper".into()
            ),
            (
                "demo-2",
                "10.77.3.12",
                "/var/lib/corral-lab/demo/demo-2/upper".into()
            ),
        ]
    );
}

#[test]
fn layouts_outside_the_limits_are_refused() {
    let base = Path::new("/b");
    assert_eq!(layout("x", 0, 0, base).unwrap_err(), LayoutError::Size(0));
    assert_eq!(
        layout("x", 0, MAX_MACHINES + 1, base).unwrap_err(),
        LayoutError::Size(MAX_MACHINES + 1)
    );
    assert_eq!(
        layout("x", MAX_LABS, 1, base).unwrap_err(),
        LayoutError::NoIndex
    );
    assert!(matches!(layout("X", 0, 1, base), Err(LayoutError::Name(_))));
}

#[test]
fn machine_names_split_into_lab_and_index() {
    let cases = [
        ("demo-0", Some(("demo", 0))),
        ("my-lab-12", Some(("my-lab", 12))),
        ("demo", None),
        ("demo-x", None),
        ("-1", None),
    ];
    for (name, want) in cases {
        assert_eq!(split_machine(name), want, "{name:?}");
    }
}

#[test]
fn a_machine_gets_a_static_address_and_no_route_out_but_the_service_range_to_the_host() {
    let l = layout("demo", 1, 2, Path::new("/b")).unwrap();
    let text = network_file(&l.machines[1], &l.bridge_ip);
    assert!(text.contains("Name=host0"));
    assert!(text.contains("Address=10.77.1.11/24"));
    let (network, routes) = text.split_once("[Route]").expect("one route");
    assert!(!network.contains("Gateway"), "no default route: {text}");
    assert_eq!(
        routes.trim(),
        "Destination=10.43.0.0/16\nGateway=10.77.1.1",
        "only the Service range, to the host's blackhole"
    );
    let files = first_boot_files(&l, &l.machines[1], "0123abcd");
    let names: Vec<&str> = files.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        names,
        [
            "etc/machine-id",
            "etc/hostname",
            "etc/systemd/network/10-corral-lab-host0.network",
            "etc/resolv.conf"
        ]
    );
    assert!(!files[3].1.contains("nameserver"), "{}", files[3].1);
    assert_eq!(files[0].1, "0123abcd\n");
    assert_eq!(files[1].1, "demo-1\n");
}

#[test]
fn nspawn_boots_an_overlay_on_the_bridge_with_binaries_and_installer_bound() {
    let l = layout("demo", 2, 1, Path::new("/b")).unwrap();
    let argv = nspawn_argv(
        &l,
        &l.machines[0],
        Path::new("/cache/rootfs"),
        Path::new("/build/bin"),
    );
    for want in [
        "--register=no",
        "--keep-unit",
        "--capability=all",
        "--system-call-filter=@keyring bpf",
        "--overlay=/cache/rootfs:/b/demo/demo-0/upper:/",
        "--machine=demo-0",
        "--network-bridge=crlab2",
        "--bind-ro=/b/demo/opt:/opt/corral",
        "--bind-ro=/build/bin:/opt/corral/bin",
        "--boot",
    ] {
        assert!(
            argv.iter().any(|a| a == want),
            "{want} missing from {argv:?}"
        );
    }
    assert_eq!(argv[0], "systemd-nspawn");
    let scripts = argv
        .iter()
        .position(|a| a.ends_with(":/opt/corral"))
        .unwrap();
    let bins = argv
        .iter()
        .position(|a| a.ends_with(":/opt/corral/bin"))
        .unwrap();
    assert!(
        scripts < bins,
        "the binaries are bound inside the scripts dir"
    );
}

#[test]
fn the_installer_runs_as_server_on_machine_0_and_as_agent_with_url_and_token() {
    let l = layout("demo", 4, 3, Path::new("/b")).unwrap();
    assert_eq!(
        install_argv(&l, Role::Server, None, None),
        [
            "env",
            "INSTALL_CORRAL_BIN_DIR=/opt/corral/bin",
            "bash",
            "/opt/corral/install.sh",
            "server"
        ]
    );
    assert_eq!(
        install_argv(&l, Role::Agent, Some("K10abc::id.secret"), Some("--x 1")),
        [
            "env",
            "INSTALL_CORRAL_BIN_DIR=/opt/corral/bin",
            "CORRAL_URL=https://10.77.4.10:7443",
            "CORRAL_TOKEN=K10abc::id.secret",
            "bash",
            "/opt/corral/install.sh",
            "agent"
        ]
    );
}

#[test]
fn cgroup_hierarchies_are_read_from_mountinfo() {
    let mountinfo = "\
25 30 0:22 / /sys rw,nosuid - sysfs sysfs rw
31 25 0:26 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755
32 31 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
33 31 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd
36 31 0:31 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset
40 30 0:35 / /proc rw - proc proc rw
";
    let mounts = cgroup_mounts(mountinfo);
    assert_eq!(
        mounts,
        [
            PathBuf::from("/sys/fs/cgroup/unified"),
            "/sys/fs/cgroup/systemd".into(),
            "/sys/fs/cgroup/cpuset".into()
        ]
    );
    assert_eq!(
        cgroup_dirs(&mounts[2..], "demo-1"),
        [PathBuf::from("/sys/fs/cgroup/cpuset/corral-lab-demo-1")]
    );
}

#[test]
fn a_machine_has_booted_when_running_or_degraded() {
    let cases = [
        ("running\n", true),
        ("degraded\n", true),
        ("starting\n", false),
        ("initializing", false),
        ("offline", false),
        ("", false),
    ];
    for (out, want) in cases {
        assert_eq!(booted(out), want, "{out:?}");
    }
}

#[test]
fn with_several_servers_machine_0_inits_the_next_join_it_and_the_rest_are_agents() {
    let l = layout("ha", 2, 4, Path::new("/b"))
        .unwrap()
        .with_servers(3)
        .unwrap();
    let roles: Vec<Role> = (0..4).map(|i| l.role(i)).collect();
    assert_eq!(
        roles,
        [
            Role::ServerInit,
            Role::ServerJoin,
            Role::ServerJoin,
            Role::Agent
        ]
    );
    assert_eq!(
        l.server_urls(),
        [
            "https://10.77.2.10:7443",
            "https://10.77.2.11:7443",
            "https://10.77.2.12:7443"
        ]
    );
    assert_eq!(
        install_argv(&l, Role::ServerInit, None, Some("--x 1")),
        [
            "env",
            "INSTALL_CORRAL_BIN_DIR=/opt/corral/bin",
            "INSTALL_CORRAL_EXEC=--x 1",
            "bash",
            "/opt/corral/install.sh",
            "server",
            "--cluster-init"
        ]
    );
    assert_eq!(
        install_argv(&l, Role::ServerJoin, Some("K10ab::server:s"), None),
        [
            "env",
            "INSTALL_CORRAL_BIN_DIR=/opt/corral/bin",
            "CORRAL_TOKEN=K10ab::server:s",
            "bash",
            "/opt/corral/install.sh",
            "server",
            "--server",
            "https://10.77.2.10:7443"
        ]
    );
    // One server: SQLite as before.
    let one = layout("one", 2, 3, Path::new("/b")).unwrap();
    assert_eq!(one.role(0), Role::Server);
    assert_eq!(one.role(1), Role::Agent);
    for bad in [0, 5] {
        assert!(matches!(
            layout("ha", 2, 4, Path::new("/b"))
                .unwrap()
                .with_servers(bad),
            Err(LayoutError::Servers { .. })
        ));
    }
}
