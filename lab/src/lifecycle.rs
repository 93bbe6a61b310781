//! The lab verbs: create (rootfs, bridge, machines booted, installer run, nodes Ready), list,
//! delete (machines killed, cgroups, bridge, uppers and state removed; idempotent, fine on a
//! half-created lab), exec, poweroff (or a power cut) and boot of one machine.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tracing::info;

use crate::layout::{self, Layout, MachineLayout, Role};
use crate::state::{self, State};
use crate::{host, install, io_err, machine, require_host, rootfs, secs, CreateRequest, Error};
use crate::{Options, Result};

/// How long `systemctl poweroff` may take before the machine is killed.
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(30);

/// A row of `corral lab list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabInfo {
    pub name: String,
    pub machines: usize,
    pub running: usize,
    pub bridge: String,
    pub server: String,
}

impl LabInfo {
    pub fn state(&self) -> String {
        match self.running {
            0 => "stopped".into(),
            n if n == self.machines => "running".into(),
            n => format!("partial ({n}/{} running)", self.machines),
        }
    }
}

pub fn list(opts: &Options) -> Vec<LabInfo> {
    state::list(&opts.base)
        .iter()
        .map(|s| LabInfo {
            name: s.layout.name.clone(),
            machines: s.machines.len(),
            running: s
                .machines
                .iter()
                .filter(|m| machine::alive(m.pid, m.start_time))
                .count(),
            bridge: s.layout.bridge.clone(),
            server: s.layout.server_url(),
        })
        .collect()
}

/// The lab holding machine `name`, and the machine's layout.
pub fn find_machine(opts: &Options, name: &str) -> Result<(State, MachineLayout)> {
    let (lab, _) =
        layout::split_machine(name).ok_or_else(|| Error::MachineNotFound(name.to_string()))?;
    let st = State::load(&opts.base, lab)?.ok_or_else(|| Error::MachineNotFound(name.into()))?;
    let m = st
        .layout
        .machine(name)
        .cloned()
        .ok_or_else(|| Error::MachineNotFound(name.to_string()))?;
    Ok((st, m))
}

fn running_pid(st: &State, name: &str) -> Option<(i32, u64)> {
    let ms = st.machines.iter().find(|m| m.name == name)?;
    if machine::alive(ms.pid, ms.start_time) {
        Some((ms.pid?, ms.start_time?))
    } else {
        None
    }
}

/// Prepares and starts machine `m` (not waiting for its boot), recording its PID.
fn start_machine(st: &mut State, m: &MachineLayout, images: &[PathBuf]) -> Result<(i32, u64)> {
    machine::prepare(&st.layout, m, images)?;
    let cgroups = host::cgroup_dirs(&m.name);
    host::ensure_cgroups(&cgroups)?;
    let (pid, start) = machine::spawn(&st.layout, m, &st.rootfs, &st.bin_dir, &cgroups)?;
    if let Some(ms) = st.machine_mut(&m.name) {
        ms.pid = Some(pid);
        ms.start_time = Some(start);
        ms.cgroups = cgroups;
    }
    st.save()?;
    Ok((pid, start))
}

/// The embedded scripts, executable, and the empty mount point of the binaries.
fn write_scripts(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).map_err(io_err(&bin))?;
    for (name, text) in crate::SCRIPTS {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(io_err(&path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(io_err(&path))?;
    }
    Ok(())
}

/// The blackholes added by labs, remembered across labs (the last lab removes them).
fn blackholes_file(base: &Path) -> PathBuf {
    base.join("blackholes-added")
}

pub async fn create(
    opts: &Options,
    req: &CreateRequest,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<State> {
    create_with_servers(opts, req, 1, progress).await
}

/// As [`create`], with machines 0..servers as servers: more than one run on an embedded etcd
/// (machine 0 `--cluster-init`, the next ones joining it with its server token).
pub async fn create_with_servers(
    opts: &Options,
    req: &CreateRequest,
    servers: usize,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<State> {
    require_host()?;
    layout::layout(&req.name, 0, req.machines, &opts.base)?.with_servers(servers)?;
    if State::load(&opts.base, &req.name)?.is_some() {
        return Err(Error::Exists(req.name.clone()));
    }
    if !opts.bin_dir.is_dir() {
        return Err(Error::BinDir(opts.bin_dir.clone()));
    }
    let started = Instant::now();
    progress("Preparing the machines' rootfs (built once, then cached)");
    let rootfs = rootfs(&opts.base)?;
    let mut st = {
        let _lock = state::lock(&opts.base)?;
        if State::load(&opts.base, &req.name)?.is_some() || opts.base.join(&req.name).exists() {
            return Err(Error::Exists(req.name.clone()));
        }
        let mut used: Vec<u8> = state::list(&opts.base)
            .iter()
            .map(|s| s.layout.index)
            .collect();
        // A bridge left by something else keeps its index out of use.
        let links = host::links()?;
        used.extend(
            links
                .iter()
                .filter_map(|n| n.strip_prefix("crlab")?.parse::<u8>().ok()),
        );
        let index = layout::free_index(&used)?;
        let l =
            layout::layout(&req.name, index, req.machines, &opts.base)?.with_servers(servers)?;
        std::fs::create_dir_all(&l.dir).map_err(io_err(&l.dir))?;
        write_scripts(&l.scripts_dir())?;
        let st = State::new(l, rootfs, opts.bin_dir.clone());
        st.save()?;
        let added = host::ensure_blackholes()?;
        if !added.is_empty() {
            let file = blackholes_file(&opts.base);
            std::fs::write(&file, added.join("\n")).map_err(io_err(&file))?;
        }
        st
    };
    let l = st.layout.clone();
    progress(&format!("Creating bridge {} ({})", l.bridge, l.subnet));
    host::ensure_bridge(&l)?;
    let mut pids = Vec::new();
    for m in &l.machines {
        progress(&format!("Booting machine {} ({})", m.name, m.ip));
        pids.push(start_machine(&mut st, m, &req.images)?);
    }
    let mut leaders = Vec::new();
    for (m, (pid, start)) in l.machines.iter().zip(&pids) {
        leaders.push(machine::wait_booted(m, *pid, *start, opts.boot_timeout).await?);
        progress(&format!(
            "Machine {} is up (systemd running) after {}",
            m.name,
            secs(started)
        ));
    }
    if req.install {
        install_all(
            &mut st,
            &leaders,
            opts.server_exec.as_deref(),
            req.timeout,
            progress,
        )
        .await?;
    }
    info!(lab = %l.name, seconds = started.elapsed().as_secs_f64(), "lab created");
    Ok(st)
}

/// Runs the installer on a lab created with `install: false` (machines booted): the servers
/// its layout names (machine 0, then the next ones joining it), agents on the others, then
/// waits for every node to be Ready.
pub async fn install_lab(
    opts: &Options,
    name: &str,
    timeout: Duration,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<State> {
    require_host()?;
    let mut st = State::load(&opts.base, name)?.ok_or_else(|| Error::NotFound(name.into()))?;
    let mut leaders = Vec::new();
    for m in &st.layout.machines {
        let (pid, _) =
            running_pid(&st, &m.name).ok_or_else(|| Error::PoweredOff(m.name.clone()))?;
        leaders.push(machine::leader(pid).ok_or_else(|| Error::PoweredOff(m.name.clone()))?);
    }
    install_all(
        &mut st,
        &leaders,
        opts.server_exec.as_deref(),
        timeout,
        progress,
    )
    .await?;
    Ok(st)
}

async fn install_all(
    st: &mut State,
    leaders: &[i32],
    server_exec: Option<&str>,
    timeout: Duration,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<()> {
    let l = st.layout.clone();
    let m0 = &l.machines[0];
    let t = Instant::now();
    progress(&format!(
        "Installing the server on {} (log: {})",
        m0.name,
        m0.install_log().display()
    ));
    let role = l.role(0);
    install::run_installer(&l, m0, leaders[0], role, None, server_exec, timeout).await?;
    let token = install::agent_token(m0, leaders[0], timeout).await?;
    progress(&format!("Server installed on {} in {}", m0.name, secs(t)));
    if l.servers > 1 {
        let server_token = install::server_token(m0, leaders[0], timeout).await?;
        // One at a time: etcd adds a member only once the ones before it have started.
        for (m, &leader) in l.machines.iter().zip(leaders).take(l.servers).skip(1) {
            progress(&format!(
                "Installing a server on {} (joining {}; log: {})",
                m.name,
                l.server_url(),
                m.install_log().display()
            ));
            install::run_installer(
                &l,
                m,
                leader,
                Role::ServerJoin,
                Some(&server_token),
                server_exec,
                timeout,
            )
            .await?;
            progress(&format!("Server installed on {} after {}", m.name, secs(t)));
        }
    }
    let mut joins = JoinSet::new();
    for (m, &leader) in l.machines.iter().zip(leaders).skip(l.servers) {
        progress(&format!(
            "Installing an agent on {} (joining {})",
            m.name,
            l.server_url()
        ));
        let (l, m, token) = (l.clone(), m.clone(), token.clone());
        joins.spawn(async move {
            install::run_installer(&l, &m, leader, Role::Agent, Some(&token), None, timeout)
                .await
                .map(|()| m.name)
        });
    }
    while let Some(res) = joins.join_next().await {
        let machine = res.map_err(|source| Error::Task {
            lab: l.name.clone(),
            source,
        })??;
        progress(&format!("Agent installed on {machine} after {}", secs(t)));
    }
    let (kubeconfig, _) = install::copy_kubeconfig(&l, leaders[0], timeout).await?;
    progress(&format!(
        "Waiting for {} nodes to be Ready",
        l.machines.len()
    ));
    install::wait_nodes_ready(&l, &kubeconfig, timeout, progress).await?;
    st.installed = true;
    st.save()
}

/// Deletes lab `name` and everything it made on this host. Deleting a lab that does not
/// exist (or no longer) succeeds.
pub async fn delete(opts: &Options, name: &str, progress: &(dyn Fn(&str) + Sync)) -> Result<()> {
    require_host()?;
    layout::validate_name(name)?;
    let dir = opts.base.join(name);
    let Some(st) = State::load(&opts.base, name)? else {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
        }
        progress(&format!("Lab {name:?} does not exist: nothing to delete"));
        return Ok(());
    };
    let l = &st.layout;
    progress(&format!("Stopping {} machines", l.machines.len()));
    for ms in &st.machines {
        if let (Some(pid), Some(start)) = (ms.pid, ms.start_time) {
            machine::kill_machine(pid, start);
        }
    }
    for ms in &st.machines {
        let mut dirs = ms.cgroups.clone();
        for d in host::cgroup_dirs(&ms.name) {
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
        host::remove_cgroups(&dirs).await?;
    }
    for ms in &st.machines {
        wait_gone(ms.pid, ms.start_time).await?;
        host::remove_nspawn_leftovers(&ms.name);
        host::remove_host_veth(&ms.name)?;
    }
    progress(&format!("Removing bridge {}", l.bridge));
    host::remove_bridge(l)?;
    {
        let _lock = state::lock(&opts.base)?;
        let others = state::list(&opts.base)
            .iter()
            .filter(|s| s.layout.name != name)
            .count();
        let file = blackholes_file(&opts.base);
        let machines_left = state::list(&opts.base)
            .iter()
            .filter(|s| s.layout.name != name)
            .flat_map(|s| s.machines.iter())
            .any(|m| machine::alive(m.pid, m.start_time));
        if !machines_left {
            host::remove_rootfs_lock(&st.rootfs);
        }
        if others == 0 && file.exists() {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let added: Vec<String> = text.lines().map(str::to_string).collect();
            host::remove_blackholes(&added)?;
            std::fs::remove_file(&file).map_err(io_err(&file))?;
        }
        progress(&format!("Removing {}", dir.display()));
        std::fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
    }
    Ok(())
}

async fn wait_gone(pid: Option<i32>, start: Option<u64>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while machine::alive(pid, start) {
        if Instant::now() > deadline {
            return Err(Error::Lingering {
                what: format!("systemd-nspawn process {pid:?}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Runs `argv` inside `machine` with this process's stdin, stdout and stderr; returns its
/// exit code (128 + signal when killed).
pub fn exec(opts: &Options, name: &str, argv: &[String]) -> Result<i32> {
    let (st, _) = find_machine(opts, name)?;
    let (pid, _) = running_pid(&st, name).ok_or_else(|| Error::PoweredOff(name.into()))?;
    let leader = machine::leader(pid).ok_or_else(|| Error::PoweredOff(name.into()))?;
    let status = machine::nsenter(leader, argv)
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|source| Error::Exec {
            command: argv.join(" "),
            source,
        })?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// Runs `argv` inside `machine` and returns its output (for tests and tools).
pub fn exec_output(opts: &Options, name: &str, argv: &[&str]) -> Result<std::process::Output> {
    let (st, _) = find_machine(opts, name)?;
    let (pid, _) = running_pid(&st, name).ok_or_else(|| Error::PoweredOff(name.into()))?;
    let leader = machine::leader(pid).ok_or_else(|| Error::PoweredOff(name.into()))?;
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    machine::nsenter(leader, &argv)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Exec {
            command: argv.join(" "),
            source,
        })
}

/// Powers machine `name` off (`systemctl poweroff`, killed after 30 s); its upper is kept.
pub async fn poweroff(opts: &Options, name: &str) -> Result<Duration> {
    require_host()?;
    let t = Instant::now();
    let (mut st, m) = find_machine(opts, name)?;
    let (pid, start) = running_pid(&st, name).ok_or_else(|| Error::PoweredOff(name.into()))?;
    machine::poweroff(&m, pid, start, POWEROFF_TIMEOUT).await;
    host::kill_cgroup_procs(&machine_cgroups(&st, name)).await?;
    if let Some(ms) = st.machine_mut(name) {
        ms.pid = None;
        ms.start_time = None;
    }
    st.save()?;
    Ok(t.elapsed())
}

/// The cgroup directories of machine `name` in the lab's state.
fn machine_cgroups(st: &crate::State, name: &str) -> Vec<PathBuf> {
    st.machines
        .iter()
        .find(|ms| ms.name == name)
        .map(|ms| ms.cgroups.clone())
        .unwrap_or_default()
}

/// Cuts machine `name`'s power: its systemd and every process in it are killed at once (no
/// shutdown), as a host that fails; its upper is kept, so it can boot again.
pub async fn power_cut(opts: &Options, name: &str) -> Result<Duration> {
    require_host()?;
    let t = Instant::now();
    let (mut st, _) = find_machine(opts, name)?;
    let (pid, start) = running_pid(&st, name).ok_or_else(|| Error::PoweredOff(name.into()))?;
    machine::kill_machine(pid, start);
    host::kill_cgroup_procs(&machine_cgroups(&st, name)).await?;
    wait_gone(Some(pid), Some(start)).await?;
    // Its half-closed connections may keep its network namespace, and so its veth, a while.
    host::remove_host_veth(name)?;
    if let Some(ms) = st.machine_mut(name) {
        ms.pid = None;
        ms.start_time = None;
    }
    st.save()?;
    Ok(t.elapsed())
}

/// Boots powered-off machine `name` again on the same upper; waits until systemd runs.
pub async fn boot(opts: &Options, name: &str) -> Result<Duration> {
    require_host()?;
    let t = Instant::now();
    let (mut st, m) = find_machine(opts, name)?;
    if running_pid(&st, name).is_some() {
        return Err(Error::Running(name.to_string()));
    }
    host::ensure_bridge(&st.layout)?;
    let (pid, start) = start_machine(&mut st, &m, &[])?;
    machine::wait_booted(&m, pid, start, opts.boot_timeout).await?;
    Ok(t.elapsed())
}

/// The layout of lab `name`, if it exists.
pub fn layout_of(opts: &Options, name: &str) -> Result<Layout> {
    State::load(&opts.base, name)?
        .map(|s| s.layout)
        .ok_or_else(|| Error::NotFound(name.to_string()))
}
