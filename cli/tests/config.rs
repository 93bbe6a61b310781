//! The config file, contexts and the precedence of `--server`, `CORRAL_SERVER` and the file;
//! `version` and `completion`.

mod common;

use common::{run, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contexts_choose_the_server_and_default_namespace() {
    // Contexts written by `corral config` here carry no CA: a plaintext control plane.
    let c = Cluster::start_insecure().await;
    let url = c.cp.url();
    let closed = format!(
        "http://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    );
    // Without CORRAL_SERVER, only the file says where the server is.
    let corral = |args: &[&str]| {
        let mut cmd = c.command(args);
        cmd.env_remove("CORRAL_SERVER");
        run(cmd, None)
    };
    assert_eq!(
        corral(&["config", "set-cluster", "lab", "--server", &url])
            .await
            .ok(),
        "Cluster \"lab\" set.\n"
    );
    assert_eq!(
        corral(&["config", "set-cluster", "gone", "--server", &closed])
            .await
            .ok(),
        "Cluster \"gone\" set.\n"
    );
    assert_eq!(
        corral(&["config", "set-credentials", "admin", "--token", "t0k"])
            .await
            .ok(),
        "User \"admin\" set.\n"
    );
    assert_eq!(
        corral(&[
            "config",
            "set-context",
            "taller",
            "--cluster",
            "lab",
            "--user",
            "admin",
            "--namespace",
            "taller"
        ])
        .await
        .ok(),
        "Context \"taller\" created.\n"
    );
    assert_eq!(
        corral(&["config", "set-context", "off", "--cluster", "gone"])
            .await
            .ok(),
        "Context \"off\" created.\n"
    );
    assert_eq!(
        corral(&["config", "use-context", "taller"]).await.ok(),
        "Switched to context \"taller\".\n"
    );
    assert_eq!(
        corral(&["config", "current-context"]).await.ok(),
        "taller\n"
    );
    assert_eq!(
        corral(&["config", "get-contexts"]).await.ok(),
        concat!(
            "CURRENT   NAME     CLUSTER   AUTHINFO   NAMESPACE\n",
            "*         taller   lab       admin      taller\n",
            "          off      gone                 \n",
        )
    );
    let out = corral(&["config", "use-context", "nope"]).await;
    assert_eq!(
        out.failed(),
        "error: no context exists with the name: \"nope\"\n"
    );

    // The context's namespace is the default for commands.
    assert_eq!(
        corral(&["create", "namespace", "taller"]).await.ok(),
        "namespace/taller created\n"
    );
    assert_eq!(
        corral(&["create", "deployment", "web", "--image=nginx"])
            .await
            .ok(),
        "deployment.apps/web created\n"
    );
    assert!(c
        .client
        .get_value(&corral_api::kinds::DEPLOYMENTS, "taller", "web")
        .await
        .is_ok());
    assert_eq!(
        corral(&["get", "deploy", "-o", "name"]).await.ok(),
        "deployment.apps/web\n"
    );
    assert_eq!(
        corral(&["get", "deploy", "-n", "default"]).await.stderr,
        "No resources found in default namespace.\n"
    );

    // --context picks another; --server beats the file; CORRAL_SERVER beats the file too.
    let out = corral(&["--context", "off", "get", "pods"]).await;
    assert!(
        out.failed()
            .starts_with("The connection to the server 127.0.0.1:"),
        "{out:?}"
    );
    assert_eq!(
        corral(&[
            "--context",
            "off",
            "--server",
            &url,
            "get",
            "deploy",
            "-A",
            "-o",
            "name"
        ])
        .await
        .ok(),
        "deployment.apps/web\n"
    );
    let mut cmd = c.command(&["--context", "off", "get", "ns", "taller", "-o", "name"]);
    cmd.env("CORRAL_SERVER", &url);
    assert_eq!(run(cmd, None).await.ok(), "namespace/taller\n");
    let out = corral(&["--context", "missing", "get", "pods"]).await;
    assert_eq!(out.failed(), "error: context \"missing\" does not exist\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_config_file_is_reported_with_its_location() {
    let c = Cluster::start().await;
    std::fs::write(
        c.home().join("config"),
        "current-context: x\ncontexts:\n- name: x\n  context:\n    clustr: a\n",
    )
    .unwrap();
    let out = c.corral(&["get", "pods"]).await;
    let err = out.failed();
    assert!(err.contains("unknown field `clustr`"), "{err}");
    assert!(err.contains("line 5"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_completion_and_api_resources() {
    let c = Cluster::start().await;
    let out = c.corral(&["version"]).await;
    let text = out.ok();
    assert!(
        text.starts_with("Client Version: v0.1.0\nServer Version: v"),
        "{text}"
    );
    for shell in ["bash", "zsh", "fish"] {
        let out = c.corral(&["completion", shell]).await;
        assert!(out.ok().contains("corral"), "{shell}");
        assert!(out.stdout.contains("rollout"), "{shell}");
    }
    let out = c.corral(&["api-resources"]).await;
    let line = out
        .ok()
        .lines()
        .find(|l| l.starts_with("deployments "))
        .unwrap();
    assert_eq!(
        common::cells(line),
        ["deployments", "deploy", "apps/v1", "true", "Deployment"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_can_i_answers_yes_or_no_with_kubectls_exit_codes() {
    let c = Cluster::start().await;
    let out = c.corral(&["auth", "can-i", "delete", "pods"]).await;
    assert_eq!(out.ok(), "yes\n");
    // About another user (a SubjectAccessReview): nobody bound them to anything.
    let out = c
        .corral(&["auth", "can-i", "list", "secrets", "--as", "vera"])
        .await;
    assert_eq!((out.code, out.stdout.as_str()), (1, "no\n"), "{out:?}");
    let out = c
        .corral(&[
            "auth",
            "can-i",
            "create",
            "selfsubjectaccessreviews",
            "--as",
            "vera",
            "--as-group",
            "system:authenticated",
            "-q",
        ])
        .await;
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:?}");
}
