use super::*;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

fn conf(socket: &Path, prev: Option<Value>) -> String {
    let mut conf = json!({
        "cniVersion": "1.0.0", "name": "pods", "type": "weft-cni",
        "socket": socket,
    });
    if let Some(prev) = prev {
        conf["prevResult"] = prev;
    }
    conf.to_string()
}

fn prev() -> Value {
    json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "sandbox": "/var/run/netns/x"}],
        "ips": [{"address": "10.1.2.3/24", "gateway": "10.1.2.1", "interface": 0},
                {"address": "fd00::3/64", "interface": 0}],
    })
}

const POD_ARGS: &str = "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;\
                        K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=1234-5678";

#[test]
fn version_lists_the_supported_versions_in_the_asked_version() {
    let env = env_of(&[("CNI_COMMAND", "VERSION")]);
    let out = run(&env, r#"{"cniVersion":"0.4.0"}"#).unwrap();
    let out: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out["cniVersion"], "0.4.0");
    assert_eq!(
        out["supportedVersions"],
        json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0"])
    );
}

#[test]
fn an_unknown_command_or_version_is_a_cni_error_with_its_code() {
    let env = env_of(&[("CNI_COMMAND", "GC"), ("CNI_CONTAINERID", "c1")]);
    assert_eq!(run(&env, "{}").unwrap_err().code, code::INVALID_ENVIRONMENT);
    let env = env_of(&[("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "c1")]);
    let error = run(
        &env,
        r#"{"cniVersion":"9.9.9","name":"n","type":"weft-cni"}"#,
    )
    .unwrap_err();
    assert_eq!(error.code, code::INCOMPATIBLE_VERSION);
    assert!(error.msg.contains("9.9.9"), "{error:?}");
    assert_eq!(run(&env, "not json").unwrap_err().code, code::DECODE);
    let printed: Value = serde_json::from_str(&error.to_json("1.0.0")).unwrap();
    assert_eq!(printed["code"], 1);
    assert_eq!(printed["cniVersion"], "1.0.0");
}

#[test]
fn pod_comes_from_kubelet_cni_args_or_the_container_id() {
    let env = env_of(&[
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/var/run/netns/cni-1"),
        ("CNI_ARGS", POD_ARGS),
    ]);
    let pod = pod_args(&env).unwrap();
    assert_eq!(
        (pod.uid.as_str(), pod.name.as_str(), pod.namespace.as_str()),
        ("1234-5678", "web-0", "shop")
    );
    assert_eq!(pod.netns, Some(PathBuf::from("/var/run/netns/cni-1")));
    let bare = pod_args(&env_of(&[("CNI_CONTAINERID", "c1")])).unwrap();
    assert_eq!((bare.uid.as_str(), bare.name.as_str()), ("c1", "c1"));
    assert_eq!(bare.namespace, "default");
    assert_eq!(
        pod_args(&env_of(&[])).unwrap_err().code,
        code::INVALID_ENVIRONMENT
    );
}

#[test]
fn result_addresses_drop_their_prefix() {
    let ips = result_ips(&prev());
    assert_eq!(
        ips,
        vec![
            "10.1.2.3".parse::<IpAddr>().unwrap(),
            "fd00::3".parse().unwrap()
        ]
    );
    assert!(result_ips(&json!({"cniVersion": "1.0.0"})).is_empty());
}

#[test]
fn add_without_a_node_proxy_fails_to_be_retried_and_del_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("absent.sock");
    let env = |command: &'static str| {
        let pairs = [
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/var/run/netns/cni-1"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", POD_ARGS),
        ];
        env_of(&pairs)
    };
    let error = run(&env("ADD"), &conf(&socket, Some(prev()))).unwrap_err();
    assert_eq!(error.code, code::TRY_AGAIN_LATER);
    assert!(error.msg.contains("absent.sock"), "{error:?}");
    assert_eq!(run(&env("DEL"), &conf(&socket, None)).unwrap(), "");
    assert_eq!(
        run(&env("CHECK"), &conf(&socket, Some(prev())))
            .unwrap_err()
            .code,
        code::TRY_AGAIN_LATER
    );
    let error = run(&env("ADD"), &conf(&socket, None)).unwrap_err();
    assert_eq!(error.code, code::INVALID_CONFIG);
    assert!(error.msg.contains("prevResult"), "{error:?}");
}

#[test]
fn excluded_namespaces_pass_the_previous_result_through_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let mut conf: Value =
        serde_json::from_str(&conf(&dir.path().join("absent.sock"), Some(prev()))).unwrap();
    conf["excludeNamespaces"] = json!(["shop"]);
    let env = env_of(&[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/var/run/netns/cni-1"),
        ("CNI_ARGS", POD_ARGS),
    ]);
    let out: Value = serde_json::from_str(&run(&env, &conf.to_string()).unwrap()).unwrap();
    assert_eq!(out, prev());
}
