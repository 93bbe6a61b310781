//! Command-line grammar: kubectl's verbs and flags.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "corral",
    version,
    about = "corral controls the Corral cluster (kubectl's verbs and output)",
    disable_help_subcommand = true
)]
pub struct Cli {
    /// The control plane's address (https://HOST:PORT), or several comma-separated, tried in
    /// turn; overrides CORRAL_SERVER and the config.
    #[arg(short = 's', long, global = true)]
    pub server: Option<String>,
    /// The context of the config file to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The namespace for this request.
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Path of the config file (default: $CORRAL_CONFIG or ~/.corral/config).
    #[arg(long = "corralconfig", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply a configuration to resources by file name or stdin.
    Apply(ApplyArgs),
    /// Display one or many resources.
    Get(GetArgs),
    /// Show details of a specific resource or group of resources.
    Describe(DescribeArgs),
    /// Delete resources by file names, stdin, resources and names, or by label selector.
    Delete(DeleteArgs),
    /// Set a new size for a ReplicaSet, Deployment or StatefulSet.
    Scale(ScaleArgs),
    /// Create a resource from a file or from stdin, or a deployment, namespace, configmap or secret by name.
    Create(CreateArgs),
    /// Print the logs for a container in a pod.
    Logs(LogsArgs),
    /// Display resource (CPU/memory) usage of nodes or pods (metrics.k8s.io).
    Top(crate::commands::top::TopArgs),
    /// Execute a command in a container.
    Exec(ExecArgs),
    /// Attach to a running container (its output).
    Attach(AttachArgs),
    /// Copy files and directories to and from containers.
    Cp(CpArgs),
    /// Forward one or more local ports to a pod.
    PortForward(crate::commands::port_forward::PortForwardArgs),
    /// Manage the rollout of a resource.
    Rollout(RolloutArgs),
    /// Mark node as unschedulable.
    Cordon(NodeArgs),
    /// Mark node as schedulable.
    Uncordon(NodeArgs),
    /// Drain node in preparation for maintenance.
    Drain(DrainArgs),
    /// Update the labels on a resource.
    Label(LabelArgs),
    /// Edit a resource in $CORRAL_EDITOR, $EDITOR or vi, then save it back.
    Edit(EditArgs),
    /// Update fields of a resource with a JSON merge patch.
    Patch(PatchArgs),
    /// Set specific features on objects (`set image`).
    Set(SetArgs),
    /// Wait for a condition on one or many resources (`--for=condition=Ready`, `--for=delete`,
    /// `--for=jsonpath={.status.phase}=Running`).
    Wait(WaitArgs),
    /// Inspect authorization (`auth can-i VERB RESOURCE [NAME]`).
    Auth(AuthArgs),
    /// Print the client and server version information.
    Version(VersionArgs),
    /// Output shell completion code for the specified shell (bash, zsh, fish).
    Completion(CompletionArgs),
    /// Modify the config file.
    Config(ConfigArgs),
    /// Print the supported API resources on the server.
    ApiResources,
    /// Manage local multi-node clusters on this machine (k3d-style, no Docker engine).
    Cluster(crate::commands::cluster::ClusterArgs),
    /// Stop or start a node of a local cluster (failure drills).
    Node(crate::commands::cluster::NodeCmdArgs),
    /// Import image archives onto the nodes of a local cluster.
    Image(crate::commands::cluster::ImageArgs),
    /// Manage join (agent) and user tokens.
    Token(crate::commands::token::TokenArgs),
    /// Print the URL of the live picture of the cluster (with a short-lived read-only token).
    Dashboard(crate::commands::dashboard::DashboardArgs),
    /// Machines that boot real systemd on this host, running the installer (Vagrant-style).
    Lab(crate::commands::lab::LabArgs),
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The files, directories or `-` (stdin) that contain the configuration to apply.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<String>,
    /// Process the directory used in -f recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// `none`, `client` or `server`: only print what would be applied.
    #[arg(long, default_value = "none", num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: String,
    /// Output format: `name`.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// KIND [NAME...], KIND/NAME..., or KIND1,KIND2.
    #[arg(required = true)]
    pub resources: Vec<String>,
    /// Output format: wide, yaml, json, name, jsonpath=TEMPLATE.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Label selector (`app=web,tier!=db`).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Field selector (`spec.nodeName=node-1`).
    #[arg(long)]
    pub field_selector: Option<String>,
    /// List across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// After listing, watch for changes.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Watch for changes without listing first.
    #[arg(long)]
    pub watch_only: bool,
    /// Show all labels as the last column.
    #[arg(long)]
    pub show_labels: bool,
    /// Do not print the header row.
    #[arg(long)]
    pub no_headers: bool,
    /// Print names as kind/name.
    #[arg(long)]
    pub show_kind: bool,
    /// Sort by the value at a JSONPath (`.metadata.creationTimestamp`, `.lastTimestamp`).
    #[arg(long)]
    pub sort_by: Option<String>,
    /// Keep `metadata.managedFields` in yaml and json output (hidden by default, as kubectl
    /// hides them).
    #[arg(long)]
    pub show_managed_fields: bool,
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// KIND [NAME...] or KIND/NAME. Without a name, every object of the kind.
    #[arg(required = true)]
    pub resources: Vec<String>,
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// KIND NAME... or KIND/NAME...
    pub resources: Vec<String>,
    /// Files, directories or `-` with the objects to delete.
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<String>,
    #[arg(short = 'R', long)]
    pub recursive: bool,
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Delete every object of the kind in the namespace.
    #[arg(long)]
    pub all: bool,
    /// background, foreground or orphan (true = background, false = orphan).
    #[arg(long, default_value = "background", num_args = 0..=1, default_missing_value = "background")]
    pub cascade: String,
    /// Seconds given to the object to terminate gracefully; -1 uses the object's own.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub grace_period: i64,
    /// Immediate shutdown (grace period 1).
    #[arg(long)]
    pub now: bool,
    /// With --grace-period=0: remove at once without waiting for confirmation.
    #[arg(long)]
    pub force: bool,
    /// Wait until the objects are gone.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub wait: bool,
    /// How long to wait (0 waits one minute).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Treat "not found" as success.
    #[arg(long)]
    pub ignore_not_found: bool,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    #[arg(long, required = true, allow_negative_numbers = true)]
    pub replicas: i32,
    /// KIND/NAME or KIND NAME.
    #[arg(required = true)]
    pub resources: Vec<String>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct CreateArgs {
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<String>,
    #[arg(short = 'R', long)]
    pub recursive: bool,
    #[command(subcommand)]
    pub what: Option<CreateWhat>,
}

#[derive(Debug, Subcommand)]
pub enum CreateWhat {
    /// Create a deployment with the specified name.
    #[command(alias = "deploy")]
    Deployment(CreateDeploymentArgs),
    /// Create a namespace with the specified name.
    #[command(alias = "ns")]
    Namespace(CreateNamespaceArgs),
    /// Create a config map from a local file, directory or literal value.
    #[command(alias = "cm")]
    Configmap(CreateConfigMapArgs),
    /// Create a secret (generic or tls).
    Secret {
        #[command(subcommand)]
        what: CreateSecretWhat,
    },
}

/// Where the keys of a ConfigMap or Secret come from, as kubectl takes them.
#[derive(Debug, Args, Clone, Default)]
pub struct DataSources {
    /// Key file (key is the file name), KEY=FILE, or a directory (each regular file).
    #[arg(long = "from-file")]
    pub from_file: Vec<String>,
    /// A KEY=VALUE pair.
    #[arg(long = "from-literal")]
    pub from_literal: Vec<String>,
    /// A file of KEY=VALUE lines (blank lines and lines starting with # are skipped).
    #[arg(long = "from-env-file")]
    pub from_env_file: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CreateConfigMapArgs {
    pub name: String,
    #[command(flatten)]
    pub sources: DataSources,
    #[arg(long, default_value = "none", num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: String,
    #[arg(short = 'o', long)]
    pub output: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum CreateSecretWhat {
    /// Create a secret from a local file, directory or literal value.
    Generic(CreateSecretGenericArgs),
    /// Create a TLS secret from a certificate and key file.
    Tls(CreateSecretTlsArgs),
}

#[derive(Debug, Args)]
pub struct CreateSecretGenericArgs {
    pub name: String,
    #[command(flatten)]
    pub sources: DataSources,
    /// The type of secret to create.
    #[arg(long = "type")]
    pub type_: Option<String>,
    #[arg(long, default_value = "none", num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: String,
    #[arg(short = 'o', long)]
    pub output: Option<String>,
}

#[derive(Debug, Args)]
pub struct CreateSecretTlsArgs {
    pub name: String,
    /// Path to a PEM encoded public key certificate.
    #[arg(long, required = true)]
    pub cert: String,
    /// Path to the private key associated with the certificate.
    #[arg(long, required = true)]
    pub key: String,
    #[arg(long, default_value = "none", num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: String,
    #[arg(short = 'o', long)]
    pub output: Option<String>,
}

#[derive(Debug, Args)]
pub struct CreateDeploymentArgs {
    pub name: String,
    /// Image names to run (one container each).
    #[arg(long, required = true)]
    pub image: Vec<String>,
    #[arg(short = 'r', long, default_value_t = 1, allow_negative_numbers = true)]
    pub replicas: i32,
    /// The containerPort the container exposes.
    #[arg(long)]
    pub port: Option<i32>,
    /// `none`, `client` or `server`.
    #[arg(long, default_value = "none", num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: String,
    #[arg(short = 'o', long)]
    pub output: Option<String>,
}

#[derive(Debug, Args)]
pub struct CreateNamespaceArgs {
    pub name: String,
    #[arg(long, default_value = "none", num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: String,
    #[arg(short = 'o', long)]
    pub output: Option<String>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// POD, pod/POD, or a controller (deployment/NAME) whose first pod is used.
    pub pod: String,
    /// Container name (default: the only or first container).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Stream new output.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Logs of the previous instance of the container.
    #[arg(short = 'p', long)]
    pub previous: bool,
    /// Lines of recent log to show; -1 shows all.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub tail: i64,
    /// Prefix each line with the time it was written (RFC 3339).
    #[arg(long)]
    pub timestamps: bool,
    /// Only lines newer than this duration (5s, 2m, 3h).
    #[arg(long, value_parser = parse_duration, conflicts_with = "since_time")]
    pub since: Option<Duration>,
    /// Only lines written at or after this RFC 3339 time.
    #[arg(long)]
    pub since_time: Option<String>,
    /// Stop after this many bytes of log.
    #[arg(long, default_value_t = 0)]
    pub limit_bytes: u64,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// POD, pod/POD, or a controller (deployment/NAME) whose first pod is used.
    pub pod: String,
    /// Container name (default: the pod's first container).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Pass stdin to the container.
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Stdin is a TTY.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// POD, pod/POD, or a controller (deployment/NAME) whose first pod is used.
    pub pod: String,
    /// Container name (default: the pod's first container).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Pass stdin to the container (Corral's containers have none: output only).
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Stdin is a TTY.
    #[arg(short = 't', long)]
    pub tty: bool,
}

#[derive(Debug, Args)]
pub struct CpArgs {
    /// Source: a local path or [NAMESPACE/]POD:PATH.
    pub src: String,
    /// Destination: a local path or [NAMESPACE/]POD:PATH.
    pub dest: String,
    /// Container name (default: the pod's first container).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
}

#[derive(Debug, Args)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub action: RolloutAction,
}

#[derive(Debug, Subcommand)]
pub enum RolloutAction {
    /// Show the status of the rollout.
    Status {
        resource: Vec<String>,
        /// Wait for the rollout to finish (default true).
        #[arg(short = 'w', long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
        watch: bool,
        /// Give up after this long (0: wait forever).
        #[arg(long, default_value = "0s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// View rollout history.
    History {
        resource: Vec<String>,
        #[arg(long)]
        revision: Option<i64>,
    },
    /// Roll back to a previous rollout.
    Undo {
        resource: Vec<String>,
        /// The revision to roll back to (0: the previous one).
        #[arg(long, default_value_t = 0)]
        to_revision: i64,
    },
    /// Restart a resource (new pods through a rollout).
    Restart { resource: Vec<String> },
    /// Mark the provided resource as paused.
    Pause { resource: Vec<String> },
    /// Resume a paused resource.
    Resume { resource: Vec<String> },
}

#[derive(Debug, Args)]
pub struct AuthArgs {
    #[command(subcommand)]
    pub action: AuthAction,
}

#[derive(Debug, Subcommand)]
pub enum AuthAction {
    /// Check whether an action is allowed: prints yes or no, exits 0 or 1.
    CanI(CanIArgs),
}

#[derive(Debug, Args)]
pub struct CanIArgs {
    /// The verb: get, list, watch, create, update, patch, delete, ...
    pub verb: String,
    /// The resource (`pods`, `deployments.apps`, `pods/log`).
    pub resource: String,
    /// One object's name.
    pub name: Option<String>,
    /// Ask about every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Print nothing; only the exit code answers.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Ask about this user instead (a SubjectAccessReview: administrators only).
    #[arg(long = "as")]
    pub as_user: Option<String>,
    /// Ask about this group (repeatable), with or instead of --as.
    #[arg(long = "as-group")]
    pub as_groups: Vec<String>,
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    pub node: String,
}

#[derive(Debug, Args)]
pub struct DrainArgs {
    pub node: String,
    /// Ignore DaemonSet-managed pods.
    #[arg(long)]
    pub ignore_daemonsets: bool,
    /// Also delete pods not managed by a controller.
    #[arg(long)]
    pub force: bool,
    /// Also delete pods using emptyDir (its data is lost).
    #[arg(long)]
    pub delete_emptydir_data: bool,
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub grace_period: i64,
    /// How long to wait for the pods to go (0: wait forever).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct LabelArgs {
    /// KIND NAME... KEY=VAL... KEY-...
    #[arg(required = true)]
    pub args: Vec<String>,
    #[arg(long)]
    pub overwrite: bool,
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct EditArgs {
    /// KIND NAME or KIND/NAME.
    #[arg(required = true)]
    pub resources: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PatchArgs {
    /// KIND NAME or KIND/NAME.
    #[arg(required = true)]
    pub resources: Vec<String>,
    /// The patch, as JSON or YAML.
    #[arg(short = 'p', long)]
    pub patch: String,
    /// `merge` (RFC 7386) or `strategic` (treated as merge: lists are replaced).
    #[arg(long = "type", default_value = "strategic")]
    pub patch_type: String,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    #[command(subcommand)]
    pub what: SetWhat,
}

#[derive(Debug, Subcommand)]
pub enum SetWhat {
    /// Update the image of containers: `set image deployment/d c=nginx:1.27` (`*=IMG` for all).
    Image {
        /// KIND/NAME followed by CONTAINER=IMAGE pairs.
        #[arg(required = true)]
        args: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// KIND/NAME..., or KIND with -l or --all.
    #[arg(required = true)]
    pub resources: Vec<String>,
    /// `delete`, `condition=NAME[=VALUE]` or `jsonpath={PATH}=VALUE`.
    #[arg(long = "for", required = true)]
    pub condition: String,
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    #[arg(long)]
    pub all: bool,
    /// Give up after this long.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Only the client version.
    #[arg(long)]
    pub client: bool,
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub action: ConfigAction,
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Set the current-context.
    UseContext { name: String },
    /// Describe the contexts.
    GetContexts,
    /// Display the current-context.
    CurrentContext,
    /// Set a cluster entry.
    SetCluster {
        name: String,
        #[arg(long)]
        server: String,
    },
    /// Set a user entry.
    SetCredentials {
        name: String,
        #[arg(long)]
        token: Option<String>,
    },
    /// Set a context entry.
    SetContext {
        name: String,
        #[arg(long)]
        cluster: Option<String>,
        #[arg(long)]
        user: Option<String>,
        // The context's namespace is the global `-n/--namespace`, as in kubectl.
    },
    /// Display the config file.
    View,
    /// Create a user with a token and a role binding, and print its kubeconfig.
    CreateUser(crate::commands::token::CreateUserArgs),
}

/// Parses Go-style durations: `30s`, `5m`, `1h`, `500ms`, `1m30s`, or bare seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    // Deadlines are computed as now + timeout; keep that far from overflowing.
    const MAX: Duration = Duration::from_secs(100 * 365 * 86400);
    let d = parse_duration_unchecked(s.trim())?;
    if d > MAX {
        return Err(format!("invalid duration {s:?}: out of range"));
    }
    Ok(d)
}

fn parse_duration_unchecked(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(|| format!("invalid duration {s:?}: missing unit"))?;
        let (num, tail) = rest.split_at(digits);
        let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let secs = match unit {
            "ms" => n / 1000.0,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            _ => return Err(format!("invalid duration {s:?}: unknown unit {unit:?}")),
        };
        total = Duration::try_from_secs_f64(secs)
            .ok()
            .and_then(|d| total.checked_add(d))
            .ok_or_else(|| format!("invalid duration {s:?}: out of range"))?;
        rest = next;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("corral").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn the_workshop_command_lines_parse() {
        let cli = parse(&["get", "pods", "-o", "wide"]);
        assert!(matches!(cli.command, Command::Get(ref g) if g.output.as_deref() == Some("wide")));
        let cli = parse(&["scale", "--replicas=5", "replicaset/mi-app"]);
        assert!(matches!(cli.command, Command::Scale(ref s) if s.replicas == 5));
        let cli = parse(&[
            "create",
            "deployment",
            "mi-deploy",
            "--image=fedek3/workshop-uns:v0.2.0",
            "--replicas=3",
            "--port=80",
            "--dry-run=client",
            "-o",
            "yaml",
        ]);
        match cli.command {
            Command::Create(CreateArgs {
                what: Some(CreateWhat::Deployment(d)),
                ..
            }) => {
                assert_eq!(d.dry_run, "client");
                assert_eq!(d.port, Some(80));
            }
            other => panic!("{other:?}"),
        }
        let cli = parse(&["delete", "pod", "mi-pod", "-n", "default"]);
        assert_eq!(cli.namespace.as_deref(), Some("default"));
        let cli = parse(&["delete", "pod", "x", "--wait=false", "--cascade=orphan"]);
        assert!(matches!(cli.command, Command::Delete(ref d) if !d.wait && d.cascade == "orphan"));
        let cli = parse(&["get", "pods", "-w"]);
        assert!(matches!(cli.command, Command::Get(ref g) if g.watch));
        let cli = parse(&["rollout", "undo", "deployment/mi-deploy", "--to-revision=1"]);
        assert!(matches!(
            cli.command,
            Command::Rollout(RolloutArgs {
                action: RolloutAction::Undo { to_revision: 1, .. }
            })
        ));
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("10").is_ok());
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("99999999999999999999999999h").is_err());
        assert!(parse_duration("18446744073709551615").is_err());
    }
}
